-- graft.layouts proven by the frameworks' forward passes (oracle
-- environment: Keras 3 on TensorFlow, torch 2). gen_layouts_models.py
-- builds Keras layers and torch modules with random weights and records
-- inputs and outputs; the helpers convert the weights here; then
-- check_layouts_models.py loads the results into the other framework's
-- module (Conv1d/2d/3d, depthwise and separable convs, ConvTranspose2d,
-- a conv -> Flatten -> Linear net, LSTM, GRU, bidirectional and stacked
-- RNNs, TF1 LSTMCell / BasicLSTMCell with forget_bias and GRUCell run by
-- TF's dynamic_rnn, a conv + BatchNorm fold vs fuse_conv_bn_eval, a torch
-- LSTM as an ONNX LSTM node run by onnxruntime) and every
-- output must match within 1e-5 relative (max abs diff / max abs output).
local graft = require "graft"
local H = require "helper"
local L = graft.layouts

local function keras_to_torch(K)
  local o = {}
  for _, c in ipairs({ "conv1d", "conv2d", "conv3d" }) do
    o[c .. ".weight"], o[c .. ".bias"] = L.conv_tf_to_torch(K[c .. ".0"]), K[c .. ".1"]
  end
  o["dw.weight"], o["dw.bias"] = L.depthwise_tf_to_torch(K["dw.0"]), K["dw.1"]
  o["sep.0.weight"], o["sep.1.weight"] = L.separable_tf_to_torch(K["sep.0"], K["sep.1"])
  o["sep.1.bias"] = K["sep.2"]
  o["convt.weight"], o["convt.bias"] = L.conv_transpose_tf_to_torch(K["convt.0"]), K["convt.1"]
  o["flat.0.weight"], o["flat.0.bias"] = L.conv_tf_to_torch(K["flat.0"]), K["flat.1"]
  o["flat.3.weight"] = L.flatten_dense_tf_to_torch(K["flat.2"], { 4, 4, 4 })
  o["flat.3.bias"] = K["flat.3"]
  L.torch_rnn_layer(o, L.lstm_keras_to_torch(K["lstm.0"], K["lstm.1"], K["lstm.2"]), 0, false, "lstm.")
  L.torch_rnn_layer(o, L.gru_keras_to_torch(K["gru.0"], K["gru.1"], K["gru.2"]), 0, false, "gru.")
  L.torch_rnn_layer(o, L.lstm_keras_to_torch(K["bilstm.0"], K["bilstm.1"], K["bilstm.2"]), 0, false, "bilstm.")
  L.torch_rnn_layer(o, L.lstm_keras_to_torch(K["bilstm.3"], K["bilstm.4"], K["bilstm.5"]), 0, true, "bilstm.")
  L.torch_rnn_layer(o, L.gru_keras_to_torch(K["gru2.0"], K["gru2.1"], K["gru2.2"]), 0, false, "gru2.")
  L.torch_rnn_layer(o, L.gru_keras_to_torch(K["gru2.3"], K["gru2.4"], K["gru2.5"]), 1, false, "gru2.")
  L.torch_rnn_layer(o, L.lstm_tf1_to_torch(K["tf1lstm.kernel"], K["tf1lstm.bias"], 1.0), 0, false, "tf1lstm.")
  L.torch_rnn_layer(o, L.lstm_tf1_to_torch(K["tf1basic.kernel"], K["tf1basic.bias"], 0.5), 0, false, "tf1basic.")
  return o
end

local function torch_to_keras(T, K)
  local o = {}
  local function list(case, ...)
    for i, t in ipairs({ ... }) do o[case .. "." .. (i - 1)] = t end
  end
  list("conv2d", L.conv_torch_to_tf(T["conv2d.weight"]), T["conv2d.bias"])
  list("dw", L.depthwise_torch_to_tf(T["dw.weight"], 2), T["dw.bias"])
  list("convt", L.conv_transpose_torch_to_tf(T["convt.weight"]), T["convt.bias"])
  list("flat", L.conv_torch_to_tf(T["flat.0.weight"]), T["flat.0.bias"],
    L.flatten_dense_torch_to_tf(T["flat.3.weight"], { 4, 4, 4 }), T["flat.3.bias"])
  local function rnn(f, prefix, layer, reverse)
    local n = L.torch_rnn_names(layer, reverse, prefix)
    local k = f(T[n.weight_ih], T[n.weight_hh], T[n.bias_ih], T[n.bias_hh])
    return k.kernel, k.recurrent_kernel, k.bias
  end
  list("lstm", rnn(L.lstm_torch_to_keras, "lstm.", 0))
  list("gru", rnn(L.gru_torch_to_keras, "gru.", 0))
  local f1, f2, f3 = rnn(L.gru_torch_to_keras, "bigru.", 0)
  local b1, b2, b3 = rnn(L.gru_torch_to_keras, "bigru.", 0, true)
  list("bigru", f1, f2, f3, b1, b2, b3)
  local g = L.gru_tf1_to_keras(K["tf1gru.gates/kernel"], K["tf1gru.gates/bias"],
    K["tf1gru.candidate/kernel"], K["tf1gru.candidate/bias"])
  list("tf1gru", g.kernel, g.recurrent_kernel, g.bias)
  return o
end

describe("graft.layouts through the frameworks' forward passes", function()
  it("gives the same outputs in the other framework (1e-5 relative)", function()
    local dir = H.tmpdir()
    H.oracle(H.read("spec/fixtures/gen_layouts_models.py"), dir)
    local K = graft.open(dir .. "/keras.npz")
    local T = graft.open(dir .. "/torch.npz")
    local tt = keras_to_torch(K)
    tt["bnf.weight"], tt["bnf.bias"] = L.bn_fold(T["bn.0.weight"], T["bn.0.bias"],
      { weight = T["bn.1.weight"], bias = T["bn.1.bias"], running_mean = T["bn.1.running_mean"],
        running_var = T["bn.1.running_var"] }, 1e-5)
    graft.save(dir .. "/to_torch.npz", tt)
    graft.save(dir .. "/to_keras.npz", torch_to_keras(T, K))
    local W, R, B = L.lstm_torch_to_onnx(T["lstm.weight_ih_l0"], T["lstm.weight_hh_l0"],
      T["lstm.bias_ih_l0"], T["lstm.bias_hh_l0"])
    graft.save(dir .. "/to_onnx.npz", { W = W, R = R, B = B })
    local out = H.oracle(H.read("spec/fixtures/check_layouts_models.py"), dir)
    if os.getenv("LAYOUTS_DEBUG") then io.stderr:write(out) end
    local seen = {}
    for case, dir_, err in out:gmatch("(%S+) (%S+) (%S+)\n") do
      local key = case .. " " .. dir_
      seen[#seen + 1] = key
      assert.is_true(tonumber(err) <= 1e-5, key .. ": relative error " .. err)
    end
    assert.same({
      "conv1d keras->torch", "conv2d keras->torch", "conv3d keras->torch", "dw keras->torch",
      "sep keras->torch", "convt keras->torch", "flat keras->torch", "lstm keras->torch",
      "gru keras->torch", "bilstm keras->torch", "gru2 keras->torch",
      "tf1lstm keras->torch", "tf1basic keras->torch",
      "bn fold-output", "bn fold-weight", "bn fold-bias",
      "conv2d torch->keras", "dw torch->keras", "convt torch->keras", "flat torch->keras",
      "lstm torch->keras", "gru torch->keras", "bigru torch->keras", "tf1gru tf1->keras",
      "lstm torch->onnx",
    }, seen)
  end)
end)
