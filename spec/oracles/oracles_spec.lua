-- The oracle environment is there and holds the framework versions the
-- oracle specs are written against (tools/oracles-requirements.txt).
local H = require "helper"

describe("oracle environment", function()
  it("has TensorFlow 2.21, tf-keras 2.21, Keras 3.15, torch 2, onnxruntime, safetensors, gguf", function()
    local out = H.oracle([[
import tensorflow as tf, tf_keras, keras, torch, onnx, onnxruntime, safetensors, gguf, h5py, numpy
print(tf.__version__, tf_keras.__version__, keras.__version__, torch.__version__.split('+')[0],
      onnxruntime.__version__, safetensors.__version__)
]])
    local tfv, tfk, k3, tv = out:match("^(%S+) (%S+) (%S+) (%S+)")
    assert.are.equal("2.21", tfv:match("^%d+%.%d+"))
    assert.are.equal("2.21", tfk:match("^%d+%.%d+"))
    assert.are.equal("3.15", k3:match("^%d+%.%d+"))
    assert.are.equal("2", tv:match("^%d+"))
  end)
end)
