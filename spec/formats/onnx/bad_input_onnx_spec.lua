-- Bad ONNX input never crashes graft: truncated files, lengths that
-- overrun, unknown data types, raw_data and typed fields whose size
-- disagrees with the dims, external data that leaves the model's folder or
-- runs past its file. Each gives a clear error naming the file and the
-- tensor. The models are encoded here with a small protobuf writer
-- (field numbers from docs/formats/onnx.md).
local graft = require "graft"
local H = require "helper"

local function varint(v)
  local b = {}
  repeat
    local x = v & 0x7f
    v = v >> 7
    if v ~= 0 then x = x | 0x80 end
    b[#b + 1] = string.char(x)
  until v == 0
  return table.concat(b)
end

local function vfield(num, v) return varint(num << 3) .. varint(v) end
local function lfield(num, s) return varint(num << 3 | 2) .. varint(#s) .. s end

-- A TensorProto: dims, data_type, name, then extra records.
local function tensor(name, dtype, dims, extra)
  local s = {}
  for _, d in ipairs(dims) do s[#s + 1] = vfield(1, d) end
  s[#s + 1] = vfield(2, dtype)
  s[#s + 1] = lfield(8, name)
  s[#s + 1] = extra or ""
  return table.concat(s)
end

local function ext(kv)
  local s = {}
  for _, p in ipairs(kv) do s[#s + 1] = lfield(13, lfield(1, p[1]) .. lfield(2, p[2])) end
  return table.concat(s) .. vfield(14, 1)
end

-- A ModelProto whose graph holds these initializers.
local function model(inits)
  local g = { lfield(2, "g") }
  for _, t in ipairs(inits) do g[#g + 1] = lfield(5, t) end
  return vfield(1, 8) .. lfield(2, "spec") .. lfield(7, table.concat(g)) .. lfield(8, vfield(2, 17))
end

local FLOAT, INT4, STRING = 1, 22, 8
local f32 = function(...) return string.pack("<" .. string.rep("f", select("#", ...)), ...) end

-- Opening path fails with a message that starts with "graft: <path>:" and
-- contains each of the given pieces.
local function fails(path, ...)
  local err = H.raises(function()
    local m = graft.open(path)
    for _, n in ipairs(graft.names(m)) do m[n]:bytes() end
  end)
  assert.truthy(err:find("graft: " .. path .. ": ", 1, true), err)
  for _, piece in ipairs({ ... }) do
    assert.truthy(err:find(piece, 1, true), "missing '" .. piece .. "' in: " .. err)
  end
  return err
end

describe("bad ONNX input", function()
  after_each(H.cleanup)

  it("a well-formed hand-made model opens (the writer below is right)", function()
    local dir = H.tmpdir()
    H.write(dir .. "/ok.onnx", model({ tensor("w", FLOAT, { 2 }, lfield(9, f32(1.5, -2))) }))
    local m = graft.open(dir .. "/ok.onnx")
    assert.same({ 1.5, -2 }, m.w:totable())
    assert.equal(8, graft.meta(m).ir_version)
  end)

  it("truncated at every byte: an error or a smaller valid model, never a crash", function()
    local dir = H.tmpdir()
    local good = H.read(H.real("onnx/onnx-pytorch-converted-test_Conv2d/model.onnx"))
    local errors = 0
    for n = 1, #good - 1 do
      local p = dir .. "/t.onnx"
      H.write(p, good:sub(1, n))
      local ok, err = pcall(function()
        local m = graft.open(p, { format = "onnx" })
        for _, k in ipairs(graft.names(m)) do m[k]:bytes() end
      end)
      if not ok then
        errors = errors + 1
        assert.truthy(tostring(err):find("graft: " .. p .. ": ", 1, true), err)
      end
    end
    assert.is_true(errors > #good / 2)
    fails(dir .. "/t.onnx") -- the last prefix cuts the opset record
  end)

  it("lengths that overrun the file or their message", function()
    local dir = H.tmpdir()
    local p = dir .. "/over.onnx"
    H.write(p, vfield(1, 8) .. varint(7 << 3 | 2) .. varint(1000) .. "short")
    fails(p, "runs past")
    -- raw_data's length runs past the end of its TensorProto
    local t = tensor("w", FLOAT, { 1 }) .. varint(9 << 3 | 2) .. varint(200) .. f32(1)
    H.write(p, model({ t }))
    fails(p, "initializer", "runs past")
  end)

  it("unknown and missing data types; bad dims", function()
    local dir = H.tmpdir()
    local p = dir .. "/dt.onnx"
    H.write(p, model({ tensor("w", 99, { 1 }, lfield(9, "abcd")) }))
    fails(p, 'initializer "w"', "unknown data type 99")
    H.write(p, model({ lfield(8, "w") .. lfield(9, "abcd") }))
    fails(p, 'initializer "w"', "no data_type")
    H.write(p, model({ tensor("w", FLOAT, { 2 ^ 62 // 1, 4 }, lfield(9, "abcd")) }))
    fails(p, 'initializer "w"')
    local dims = {}
    for i = 1, 40 do dims[i] = 1 end
    H.write(p, model({ tensor("w", FLOAT, dims, lfield(9, "abcd")) }))
    fails(p, 'initializer "w"', "40 dims")
    local pb = dir .. "/t.pb"
    H.write(pb, vfield(1, 2) .. vfield(2, 77) .. lfield(9, "ab"))
    fails(pb, "unknown data type 77")
  end)

  it("raw_data, typed fields and string data whose size disagrees with the dims", function()
    local dir = H.tmpdir()
    local p = dir .. "/size.onnx"
    H.write(p, model({ tensor("w", FLOAT, { 3 }, lfield(9, f32(1, 2))) }))
    fails(p, 'initializer "w"', "raw_data holds 8 bytes but 3 FLOAT elements need 12")
    H.write(p, model({ tensor("w", FLOAT, { 3 }, lfield(4, f32(1, 2))) }))
    fails(p, 'initializer "w"', "float_data holds 2 values but 3 FLOAT elements need 3")
    H.write(p, model({ tensor("q", INT4, { 5 }, lfield(9, "\1\2")) }))
    fails(p, 'initializer "q"', "raw_data holds 2 bytes but 5 INT4 elements need 3")
    H.write(p, model({ tensor("s", STRING, { 2 }, lfield(6, "a")) }))
    fails(p, 'initializer "s"', "string_data holds 1 values")
    H.write(p, model({ tensor("s", STRING, { 1 }, lfield(9, "a")) }))
    fails(p, 'initializer "s"', "STRING tensor must hold its values in string_data")
  end)

  it("external data that leaves the folder, is missing, or runs past its file", function()
    local dir = H.tmpdir()
    os.execute("mkdir -p " .. H.q(dir .. "/m") .. " " .. H.q(dir .. "/out"))
    H.write(dir .. "/m/w.bin", string.rep("\0", 16))
    H.write(dir .. "/out/secret.bin", string.rep("\0", 16))
    os.execute("ln -s ../out/secret.bin " .. H.q(dir .. "/m/link.bin"))
    local p = dir .. "/m/e.onnx"
    local function with(kv)
      H.write(p, model({ tensor("w", FLOAT, { 4 }, ext(kv)) }))
    end
    with({ { "location", "w.bin" } })
    assert.same({ 0, 0, 0, 0 }, graft.open(p).w:totable())
    with({ { "location", "../out/secret.bin" } })
    fails(p, 'initializer "w"', 'leaves the model\'s folder ("..")')
    with({ { "location", dir .. "/out/secret.bin" } })
    fails(p, 'initializer "w"', "absolute path")
    with({ { "location", "link.bin" } })
    fails(p, 'initializer "w"', "resolves outside the model's folder")
    with({ { "location", "nothere.bin" } })
    fails(p, 'initializer "w"', "nothere.bin", "No such file")
    with({ { "location", "w.bin" }, { "offset", "8" } })
    fails(p, 'initializer "w"', "external data holds 8 bytes but 4 FLOAT elements need 16")
    with({ { "location", "w.bin" }, { "offset", "4" }, { "length", "16" } })
    fails(p, 'initializer "w"', "runs past the end of \"w.bin\"")
    with({ { "location", "w.bin" }, { "offset", "17" } })
    fails(p, 'initializer "w"', "offset 17 is past the end")
    with({ { "location", "w.bin" }, { "offset", "-1" } })
    fails(p, 'initializer "w"', "is not a number")
    with({ { "offset", "0" } })
    fails(p, 'initializer "w"', "without a location")
  end)

  it("names holding a NUL byte (found by fuzz/onnx.c)", function()
    local dir = H.tmpdir()
    local p = dir .. "/nul.onnx"
    H.write(p, model({ tensor("a\0b", FLOAT, { 1 }, lfield(9, f32(1))) }))
    fails(p, 'initializer "a', "the name contains a NUL byte")
    local pb = dir .. "/nul.pb"
    H.write(pb, tensor("a\0b", FLOAT, { 1 }, lfield(9, f32(1))))
    fails(pb, "the tensor's name contains a NUL byte")
  end)

  it("random byte changes of a model with every data type: errors, never crashes", function()
    local dir = H.tmpdir()
    local inits = {}
    for dt = 1, 26 do
      if dt ~= STRING then
        inits[#inits + 1] = tensor("r" .. dt, dt, { 3 }, lfield(9, string.rep("\1", 3 * 16)))
      end
    end
    local good = model(inits)
    local p = dir .. "/fz.onnx"
    local seed = 12345
    local function rnd(n)
      seed = (seed * 1103515245 + 12345) % 2147483648
      return seed % n
    end
    for _ = 1, 300 do
      local b = { good:byte(1, -1) }
      for _ = 1, 1 + rnd(3) do
        local i = 1 + rnd(#b)
        b[i] = rnd(256)
      end
      H.write(p, string.char(table.unpack(b)))
      local ok, err = pcall(function()
        local m = graft.open(p, { format = "onnx" })
        for _, k in ipairs(graft.names(m)) do m[k]:bytes() end
      end)
      if not ok then assert.truthy(tostring(err):find("graft: " .. p, 1, true), err) end
    end
  end)

  it("the writer refuses a base that is not a model and bad external_data names", function()
    local dir = H.tmpdir()
    H.write(dir .. "/junk.onnx", "\255\255\255")
    local t = { w = graft.tensor({ 1, 2 }, "float32") }
    local err = H.raises(function() graft.save(dir .. "/o.onnx", t, { base = dir .. "/junk.onnx" }) end)
    assert.truthy(err:find("junk.onnx", 1, true), err)
    H.write(dir .. "/ok.onnx", model({ tensor("w", FLOAT, { 2 }, lfield(9, f32(1, 2))) }))
    err = H.raises(function()
      graft.save(dir .. "/o.onnx", t, { base = dir .. "/ok.onnx", external_data = "../x.bin" })
    end)
    assert.truthy(err:find("must be a file name", 1, true), err)
    assert.is_nil(io.open(dir .. "/o.onnx"))
  end)
end)
