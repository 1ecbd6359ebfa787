rockspec_format = "3.0"
package = "graft"
version = "scm-1"
source = {
  url = "git+file://.",
}
description = {
  summary = "Open and write deep-learning weight files as Lua tables of tensors",
  detailed = [[
graft opens TensorFlow, Keras, PyTorch, safetensors, numpy, ONNX, GGUF and
Torch7 weight files as plain Lua tables of tensors with fast transpose and
cast methods, and writes them back in any of those formats, for moving
trained weights between frameworks.]],
  license = "MIT",
}
dependencies = {
  "lua >= 5.4",
}
external_dependencies = {
  LIBZIP = { header = "zip.h" },
  CJSON = { header = "cjson/cJSON.h" },
  PROTOBUF_C = { header = "protobuf-c/protobuf-c.h" },
  SNAPPY = { header = "snappy-c.h" },
}
-- libhdf5 is found by pkg-config in the Makefile: Debian keeps hdf5.h in
-- /usr/include/hdf5/serial, where luarocks' header check does not look.
build = {
  type = "make",
  build_variables = {
    CFLAGS = "$(CFLAGS)",
    LIBFLAG = "$(LIBFLAG)",
    LUA_INCDIR = "$(LUA_INCDIR)",
  },
  install_variables = {
    INST_LIBDIR = "$(LIBDIR)",
    INST_LUADIR = "$(LUADIR)",
    INST_BINDIR = "$(BINDIR)",
  },
}
test = {
  type = "command",
  command = "make test",
}
