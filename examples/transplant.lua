-- A weight transplant, end to end: a Keras CNN's weights (a Keras 2
-- save_weights .h5: conv kernels HWIO, dense kernels [in, out]) into a
-- PyTorch model's names and layout (OIHW, [out, in]), checked against the
-- target's template and written as a PyTorch state dict (.pt, which
-- torch.load(path, weights_only=True) reads), then read back and verified
-- value by value. Any format graft opens works as the source. The way back
-- is examples/cookbook/torch_to_keras.lua; spec/cookbook/
-- keras_cnn_torch_spec.lua runs both and compares torch's and tf-keras's
-- outputs on them (docs/cookbook/keras_cnn_torch.md).
--
--   lua5.4 examples/transplant.lua [IN] [OUT.pt]
--   graft run examples/transplant.lua [IN] [OUT.pt]

local graft = require "graft"

local src, dst = ...
src = src or "examples/data/tiny_cnn_keras.h5"
dst = dst or "/tmp/tiny_cnn_torch.pt"

local keras = graft.open(src)
print(("opened %s: %d tensors (%s)"):format(src, #graft.names(keras), graft.meta(keras).format))

-- The rules: first match wins; every tensor must be matched.
local torch_weights = graft.map(keras, {
  { "^conv(%d+)/kernel$", "conv%1.weight", "hwio_to_oihw" },
  { "^conv(%d+)/bias$",   "conv%1.bias" },
  -- Keras flattens the last conv's output in H, W, C order, PyTorch in
  -- C, H, W: the dense kernel's 64 input rows are (2, 2, 16) in Keras's
  -- order, so reorder them to (16, 2, 2) while transposing to [out, in].
  { "^dense/kernel$",     "fc.weight", function(t)
    return graft.layouts.flatten_dense_tf_to_torch(t, { 2, 2, 16 })
  end },
  { "^dense/bias$",       "fc.bias" },
})

-- What the PyTorch model's state_dict expects (on 6x6 inputs:
-- conv1 = nn.Conv2d(3, 8, 3), conv2 = nn.Conv2d(8, 16, 3), flatten,
-- fc = nn.Linear(64, 10)).
local template = {
  ["conv1.weight"] = { shape = { 8, 3, 3, 3 }, dtype = "float32" },
  ["conv1.bias"] = { shape = { 8 }, dtype = "float32" },
  ["conv2.weight"] = { shape = { 16, 8, 3, 3 }, dtype = "float32" },
  ["conv2.bias"] = { shape = { 16 }, dtype = "float32" },
  ["fc.weight"] = { shape = { 10, 64 }, dtype = "float32" },
  ["fc.bias"] = { shape = { 10 }, dtype = "float32" },
}
local ok, report = graft.check(torch_weights, template, { strict = true })
if not ok then
  for kind, list in pairs(report) do
    for _, item in ipairs(list) do io.stderr:write(kind, ": ", item, "\n") end
  end
  error("the transplant does not fit the target model")
end

graft.save(dst, torch_weights, { order = {
  "conv1.weight", "conv1.bias", "conv2.weight", "conv2.bias", "fc.weight", "fc.bias" } })
print(("wrote %s"):format(dst))

-- Read back and compare with the source, element by element.
local back = graft.open(dst)
for _, name in ipairs(graft.names(back)) do
  print(("  %-14s %-8s {%s}"):format(name, back[name].dtype, table.concat(back[name].shape, ",")))
end
assert(back["conv2.weight"]:equal(keras["conv2/kernel"]:permute(4, 3, 1, 2)))
assert(back["fc.weight"]:equal(keras["dense/kernel"]:reshape(2, 2, 16, 10):permute(4, 3, 1, 2):reshape(10, 64)))
assert(back["conv1.bias"]:equal(keras["conv1/bias"]))
print("transplant verified: every value matches the source")
