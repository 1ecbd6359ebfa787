-- graft.layouts against numpy: spec/fixtures/gen_layouts.py (Debian's
-- python3, numpy) writes random inputs and, from each framework's
-- documented layout, what every helper must give. Permutations and gate
-- reorders are compared exactly, the BatchNorm fold within 1e-6 of a
-- float64 reference. Framework forward passes: spec/toolkit/layouts_oracle_spec.lua.
local graft = require "graft"
local H = require "helper"
local L = graft.layouts

describe("graft.layouts against numpy", function()
  local dir = H.tmpdir()
  H.py(H.read("spec/fixtures/gen_layouts.py"), dir)
  local i = graft.open(dir .. "/in.npz")
  local w = graft.open(dir .. "/want.npz")

  local function same(got, name)
    assert.same(w[name].shape, got.shape, name)
    assert.is_true(got:equal(w[name]), name)
  end

  it("permutes named axes", function()
    same(graft.layout(i.hwio, "HWIO", "OIHW"), "layout_oihw")
    same(L.layout(i.abcde, "abcde", "ecadb"), "layout_ecadb")
    assert.is_true(L.layout(i.hwio, "HWIO", "HWIO"):equal(i.hwio))
  end)

  it("refuses axis names that do not match", function()
    local function msg(from, to)
      local ok, e = pcall(L.layout, i.hwio, from, to)
      assert.is_false(ok)
      return e
    end
    assert.matches("names 3 axes but the tensor has shape {3,2,4,5}", msg("HWI", "IHW"))
    assert.matches('axis "X" of "OIHX" is not in "HWIO"', msg("HWIO", "OIHX"))
    assert.matches('axis "H" appears twice in "HHIO"', msg("HHIO", "OIHH"))
    assert.matches("different numbers of axes", msg("HWIO", "OIH"))
    local ok, e = pcall(L.conv_tf_to_torch, nil)
    assert.is_false(ok)
    assert.matches("graft: layouts: conv_tf_to_torch: expected a tensor, got nil", e, 1, true)
  end)

  it("converts 1-D, 2-D and 3-D conv kernels both ways", function()
    for d = 1, 3 do
      local t = L.conv_tf_to_torch(i["conv" .. d])
      same(t, "conv" .. d .. "_torch")
      assert.is_true(L.conv_torch_to_tf(t):equal(i["conv" .. d]))
    end
    same(L.hwio_to_oihw(i.conv2), "conv2_torch")
    assert.is_true(L.oihw_to_hwio(L.hwio_to_oihw(i.conv2)):equal(i.conv2))
  end)

  it("converts transposed conv kernels; hwoi_to_oihw stays the letter permutation", function()
    same(L.conv_transpose_tf_to_torch(i.convt), "convt_torch")
    assert.is_true(L.conv_transpose_torch_to_tf(L.conv_transpose_tf_to_torch(i.convt)):equal(i.convt))
    same(L.hwoi_to_oihw(i.convt), "hwoi_oihw")
  end)

  it("converts depthwise kernels (2-D and 1-D) and back with the multiplier", function()
    same(L.depthwise_tf_to_torch(i.dw), "dw_torch")
    assert.is_true(L.depthwise_torch_to_tf(w.dw_torch, 3):equal(i.dw))
    same(L.depthwise_tf_to_torch(i.dw1), "dw1_torch")
    assert.is_true(L.depthwise_torch_to_tf(w.dw1_torch, 2):equal(i.dw1))
    local ok, e = pcall(L.depthwise_torch_to_tf, w.dw_torch, 5)
    assert.is_false(ok)
    assert.matches("do not split by multiplier 5", e)
  end)

  it("reorders a Flatten -> Dense kernel between NHWC and NCHW, both ways", function()
    same(L.flatten_dense_tf_to_torch(i.flat_k, { 3, 4, 5 }), "flat_torch")
    assert.is_true(L.flatten_dense_torch_to_tf(w.flat_torch, { 3, 4, 5 }):equal(i.flat_k))
    local ok, e = pcall(L.flatten_dense_tf_to_torch, i.flat_k, { 3, 4, 4 })
    assert.is_false(ok)
    assert.matches("has 60 rows, feature map {3,4,4} holds 48", e)
  end)

  it("converts LSTM gates: Keras, TF1 LSTMCell with forget_bias, ONNX", function()
    local k = L.lstm_keras_to_torch(i.lstm_k, i.lstm_r, i.lstm_b)
    same(k.weight_ih, "lstm_wih")
    same(k.weight_hh, "lstm_whh")
    assert.is_true(k.bias_ih:equal(i.lstm_b))
    assert.same({ 16 }, k.bias_hh.shape)
    local back = L.lstm_torch_to_keras(k.weight_ih, k.weight_hh, k.bias_ih, k.bias_hh)
    assert.is_true(back.kernel:equal(i.lstm_k) and back.recurrent_kernel:equal(i.lstm_r))
    assert.is_true(back.bias:equal(i.lstm_b))
    local t = L.lstm_tf1_to_torch(i.tf1_k, i.tf1_b, 1.0)
    same(t.weight_ih, "tf1_wih")
    same(t.weight_hh, "tf1_whh")
    same(t.bias_ih, "tf1_bih")
    local o = L.lstm_onnx_to_torch(i.onnx_W, i.onnx_R, i.onnx_B, 2)
    same(o.weight_ih, "onnx_wih1")
    same(o.weight_hh, "onnx_whh1")
    same(o.bias_ih, "onnx_bih1")
    same(o.bias_hh, "onnx_bhh1")
    local W, R, B = L.lstm_torch_to_onnx(o.weight_ih, o.weight_hh, o.bias_ih, o.bias_hh)
    assert.is_true(W:equal(i.onnx_W:narrow(1, 2, 1)) and R:equal(i.onnx_R:narrow(1, 2, 1)))
    assert.is_true(B:equal(i.onnx_B:narrow(1, 2, 1)))
  end)

  it("converts GRU gates: Keras reset_after <-> torch, TF1 GRUCell -> Keras", function()
    local g = L.gru_keras_to_torch(i.gru_k, i.gru_r, i.gru_b)
    same(g.weight_ih, "gru_wih")
    same(g.weight_hh, "gru_whh")
    same(g.bias_ih, "gru_bih")
    same(g.bias_hh, "gru_bhh")
    local back = L.gru_torch_to_keras(g.weight_ih, g.weight_hh, g.bias_ih, g.bias_hh)
    assert.is_true(back.kernel:equal(i.gru_k) and back.recurrent_kernel:equal(i.gru_r))
    assert.is_true(back.bias:equal(i.gru_b))
    local ok, e = pcall(L.gru_keras_to_torch, i.gru_k, i.gru_r, i.gru_b:select(1, 1))
    assert.is_false(ok)
    assert.matches("reset_after=False", e)
    local t = L.gru_tf1_to_keras(i.g1_gk, i.g1_gb, i.g1_ck, i.g1_cb)
    same(t.kernel, "g1_kernel")
    same(t.recurrent_kernel, "g1_rec")
    same(t.bias, "g1_bias")
  end)

  it("converts a Keras reset_after=False GRU to nn.GRU-named parameters and back", function()
    local H = require "helper"
    local k, r, b = H.iota({ 2, 9 }), H.iota({ 3, 9 }), H.iota({ 9 })
    local g = L.gru_reset_before_keras_to_torch(k, r, b)
    -- torch's r block (rows 1-3) is Keras's r (columns 4-6), z is 1-3, n is h.
    assert.is_true(g.weight_ih:narrow(1, 1, 3):equal(k:narrow(2, 4, 3):t()))
    assert.is_true(g.weight_ih:narrow(1, 4, 3):equal(k:narrow(2, 1, 3):t()))
    assert.is_true(g.weight_hh:narrow(1, 7, 3):equal(r:narrow(2, 7, 3):t()))
    assert.is_true(g.bias_ih:narrow(1, 1, 3):equal(b:narrow(1, 4, 3)))
    assert.same({ 0, 0, 0, 0, 0, 0, 0, 0, 0 }, g.bias_hh:totable())
    local back = L.gru_reset_before_torch_to_keras(g.weight_ih, g.weight_hh, g.bias_ih, g.weight_hh:select(2, 1))
    assert.is_true(back.kernel:equal(k) and back.recurrent_kernel:equal(r))
    -- bias = b_ih + b_hh, in Keras's z,r,h order
    local want = L.gates(b + L.gates(g.weight_hh:select(2, 1), "rzn", "zrn"), "zrh", "zrh")
    assert.is_true(back.bias:equal(want))
    local ok, e = pcall(L.gru_reset_before_keras_to_torch, k, r, H.iota({ 2, 9 }))
    assert.is_false(ok)
    assert.matches("gru_keras_to_torch", e)
  end)

  it("finds the feature map each Flatten of a Sequential config flattens", function()
    local function layer(cls, cfg) return { class_name = cls, config = cfg } end
    local cfg = { class_name = "Sequential", config = { layers = {
      layer("InputLayer", { batch_input_shape = { require("graft.json").null, 11, 9, 3 } }),
      layer("Conv2D", { name = "c1", filters = 4, kernel_size = { 3, 3 }, strides = { 2, 1 }, padding = "valid",
                        dilation_rate = { 1, 1 } }),
      layer("BatchNormalization", { name = "bn" }),
      layer("ZeroPadding2D", { name = "zp", padding = { { 1, 0 }, { 0, 2 } } }),
      layer("MaxPooling2D", { name = "p", pool_size = { 2, 2 }, strides = { 2, 2 }, padding = "same" }),
      layer("Flatten", { name = "f" }),
      layer("Dense", { name = "d1", units = 7 }),
      layer("Dense", { name = "d2", units = 2 }),
    } } }
    -- 11x9 -> conv 3x3 stride (2,1) valid: 5x7x4 -> pad: 6x9 -> pool same /2: 3x5x4
    assert.same({ d1 = { 3, 5, 4 } }, L.keras_flatten_fmaps(cfg))
    table.insert(cfg.config.layers, 3, layer("Lambda", { name = "odd" }))
    local ok, e = pcall(L.keras_flatten_fmaps, cfg)
    assert.is_false(ok)
    assert.matches('Flatten "f": the shape of its input is not known here (after layer "odd" (Lambda))', e, 1, true)
  end)

  it("names torch RNN parameters of stacked and bidirectional layers", function()
    assert.same({ weight_ih = "rnn.weight_ih_l1_reverse", weight_hh = "rnn.weight_hh_l1_reverse",
                  bias_ih = "rnn.bias_ih_l1_reverse", bias_hh = "rnn.bias_hh_l1_reverse" },
      L.torch_rnn_names(1, true, "rnn."))
    local out = L.torch_rnn_layer({}, L.lstm_keras_to_torch(i.lstm_k, i.lstm_r, i.lstm_b), 0)
    assert.is_true(out.weight_ih_l0:equal(w.lstm_wih))
    assert.same({ "forward_lstm", "backward_lstm" }, { L.keras_bidirectional_names("lstm") })
  end)

  it("splits and merges a fused qkv with GQA sizes", function()
    local q, k, v = L.qkv_split(i.qkv, 4, 2, 3)
    same(q, "q")
    same(k, "k")
    same(v, "v")
    assert.is_true(L.qkv_merge(q, k, v):equal(i.qkv))
    local ok, e = pcall(L.qkv_split, i.qkv, 4, 3, 3)
    assert.is_false(ok)
    assert.matches("n_head 4 is not a multiple of n_kv_head 3", e)
  end)

  it("permutes q/k for RoPE as llama.cpp's convert script does, and back", function()
    same(L.rope_permute(i.wq, 4, 4), "wq_rope")
    same(L.rope_permute(i.wk, 4, 2), "wk_rope")
    same(L.rope_permute(i.bq, 4), "bq_rope")
    assert.is_true(L.rope_unpermute(w.wk_rope, 4, 2):equal(i.wk))
    assert.is_true(L.rope_unpermute(w.wq_rope, 4):equal(i.wq))
  end)

  it("folds biases and a BatchNorm into a conv", function()
    assert.is_true(L.bias_fold(i.onnx_B:select(1, 1), i.onnx_B:select(1, 2))
      :allclose(i.onnx_B:select(1, 1):double() + i.onnx_B:select(1, 2):double()))
    local w2, b2 = L.bn_fold(i.bn_w, i.bn_b,
      { gamma = i.bn_g, beta = i.bn_be, mean = i.bn_mu, var = i.bn_var }, 1e-5)
    assert.same({ 6, 3, 3, 3 }, w2.shape)
    assert.is_true(w2:allclose(w.bn_w2, 1e-6, 1e-7))
    assert.is_true(b2:allclose(w.bn_b2, 1e-6, 1e-7))
    local ok, e = pcall(L.bn_fold, i.bn_w, nil, { gamma = i.bn_g, beta = i.bn_be, mean = i.bn_mu, var = i.lstm_b })
    assert.is_false(ok)
    assert.matches("does not match 6 output channels", e)
  end)

  it("names each layout helper usable as a graft.map transform", function()
    local m = graft.map({ ["c.kernel"] = i.conv2 }, { { "^c%.kernel$", "c.weight", "conv_tf_to_torch" } })
    same(m["c.weight"], "conv2_torch")
  end)
end)
