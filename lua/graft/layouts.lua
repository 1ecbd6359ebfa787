-- graft.layouts: how one framework lays out a layer's weights in terms of
-- another's (docs/layouts.md gives each helper's source semantics). Every
-- helper takes and returns graft tensors and is lazy where graft's views
-- and arithmetic are (permute, narrow, + ...); cat and reshape of a
-- permuted view copy. Dimensions are 1-based as everywhere in graft, so
-- numpy's transpose(3,2,0,1) is permute(4,3,1,2) here. graft.layouts is
-- this table: a function added to it can be named as a graft.map transform
-- (map calls it as f(t, name)).

local core = require "graft.core"

local L = {}

local function fail(fmt, ...)
  error("graft: layouts: " .. string.format(fmt, ...), 3)
end

local function shape_str(t)
  return "{" .. table.concat(t.shape, ",") .. "}"
end

local function need_tensor(t, what)
  if not core.is_tensor(t) then fail("%s: expected a tensor, got %s", what, type(t)) end
  return t
end

local function need_rank(t, what, lo, hi)
  need_tensor(t, what)
  local n = #t.shape
  if n < lo or n > (hi or lo) then
    fail("%s: tensor of shape %s has %d dims, wants %s", what, shape_str(t),
      n, hi and hi ~= lo and (lo .. " to " .. hi) or tostring(lo))
  end
  return n
end

local function product(shape, from, to)
  local p = 1
  for i = from or 1, to or #shape do p = p * shape[i] end
  return p
end

local function copy(list)
  local out = {}
  for i, v in ipairs(list) do out[i] = v end
  return out
end

-- Named axes --------------------------------------------------------------

-- layout(t, "HWIO", "OIHW"): permute t from the axis order `from` to `to`,
-- each a string of distinct letters, one per dimension, the same set on
-- both sides (case matters: "N" and "n" are different axes).
function L.layout(t, from, to)
  need_tensor(t, "layout")
  if type(from) ~= "string" or type(to) ~= "string" then
    fail("layout: axis names must be strings, got %s and %s", type(from), type(to))
  end
  if #from ~= #t.shape then
    fail("layout: %q names %d axes but the tensor has shape %s", from, #from, shape_str(t))
  end
  if #to ~= #from then fail("layout: %q and %q name different numbers of axes", from, to) end
  local pos = {}
  for i = 1, #from do
    local c = from:sub(i, i)
    if pos[c] then fail("layout: axis %q appears twice in %q", c, from) end
    pos[c] = i
  end
  local perm, seen = {}, {}
  for i = 1, #to do
    local c = to:sub(i, i)
    if not pos[c] then fail("layout: axis %q of %q is not in %q", c, to, from) end
    if seen[c] then fail("layout: axis %q appears twice in %q", c, to) end
    seen[c] = true
    perm[i] = pos[c]
  end
  if #perm == 0 then return t end
  return t:permute(table.unpack(perm))
end

-- Dense -------------------------------------------------------------------

-- Keras/TF Dense kernel (in, out) <-> torch Linear weight (out, in).
function L.t(t) return t:t() end
L.dense_tf_to_torch = L.t
L.dense_torch_to_tf = L.t

-- Convolutions --------------------------------------------------------------

-- Keras/TF conv kernel (k1..kd, in, out) -> torch ConvNd weight
-- (out, in, k1..kd), for d = 1, 2, 3 (any d). Also the TF/Keras transposed
-- conv kernel (k.., out, in) -> torch ConvTransposeNd weight (in, out, k..):
-- the same permutation (the last two axes swap meaning in both).
function L.conv_tf_to_torch(t)
  local n = need_rank(t, "conv_tf_to_torch", 3, 5)
  local perm = { n, n - 1 }
  for i = 1, n - 2 do perm[#perm + 1] = i end
  return t:permute(table.unpack(perm))
end

-- torch ConvNd weight (out, in, k..) -> Keras/TF kernel (k.., in, out);
-- ConvTransposeNd (in, out, k..) -> TF/Keras transposed kernel (k.., out, in).
function L.conv_torch_to_tf(t)
  local n = need_rank(t, "conv_torch_to_tf", 3, 5)
  local perm = {}
  for i = 3, n do perm[#perm + 1] = i end
  perm[#perm + 1] = 2
  perm[#perm + 1] = 1
  return t:permute(table.unpack(perm))
end

L.conv_transpose_tf_to_torch = L.conv_tf_to_torch
L.conv_transpose_torch_to_tf = L.conv_torch_to_tf

-- The 2-D names kept from graft's first layouts table.
function L.hwio_to_oihw(t)
  need_rank(t, "hwio_to_oihw", 4)
  return t:permute(4, 3, 1, 2)
end
function L.oihw_to_hwio(t)
  need_rank(t, "oihw_to_hwio", 4)
  return t:permute(3, 4, 2, 1)
end
-- Deprecated: the letter permutation (kh,kw,o,i) -> (o,i,kh,kw). It is NOT
-- the TF transposed conv -> torch ConvTranspose2d conversion (that is
-- conv_transpose_tf_to_torch, i.e. hwio_to_oihw: torch keeps (in, out, kh,
-- kw)). Kept because recipes name it; layout(t, "HWOI", "OIHW") says the same.
function L.hwoi_to_oihw(t)
  need_rank(t, "hwoi_to_oihw", 4)
  return t:permute(3, 4, 1, 2)
end

-- Keras/TF depthwise kernel (k.., in, mult) -> torch grouped conv weight
-- (in*mult, 1, k..) for Conv{1,2,3}d(in, in*mult, groups=in): TF's output
-- channel c*mult + m reads input channel c, as torch's group c does.
function L.depthwise_tf_to_torch(t)
  local n = need_rank(t, "depthwise_tf_to_torch", 3, 5)
  local s = t.shape
  local perm = { n - 1, n }
  for i = 1, n - 2 do perm[#perm + 1] = i end
  local shape = { s[n - 1] * s[n], 1 }
  for i = 1, n - 2 do shape[#shape + 1] = s[i] end
  return t:permute(table.unpack(perm)):reshape(table.unpack(shape))
end

-- torch depthwise weight (in*mult, 1, k..) -> Keras/TF (k.., in, mult);
-- mult (default 1) is the depth multiplier (out channels / groups).
function L.depthwise_torch_to_tf(t, mult)
  local n = need_rank(t, "depthwise_torch_to_tf", 3, 5)
  mult = mult or 1
  local s = t.shape
  if s[2] ~= 1 then
    fail("depthwise_torch_to_tf: weight %s: dim 2 must be 1 (groups == in channels)", shape_str(t))
  end
  if math.type(mult) ~= "integer" or mult < 1 or s[1] % mult ~= 0 then
    fail("depthwise_torch_to_tf: weight %s: %s channels do not split by multiplier %s",
      shape_str(t), s[1], tostring(mult))
  end
  local shape = { s[1] // mult, mult }
  for i = 3, n do shape[#shape + 1] = s[i] end
  local perm = {}
  for i = 3, n do perm[#perm + 1] = i end
  perm[#perm + 1] = 1
  perm[#perm + 1] = 2
  return t:reshape(table.unpack(shape)):permute(table.unpack(perm))
end

-- Keras SeparableConv (depthwise (k.., in, mult), pointwise (1.., in*mult,
-- out)) -> torch (depthwise weight (in*mult, 1, k..), pointwise weight
-- (out, in*mult, 1..)): a grouped ConvNd followed by a 1x1 ConvNd; the
-- Keras bias belongs to the pointwise conv.
function L.separable_tf_to_torch(depthwise, pointwise)
  return L.depthwise_tf_to_torch(depthwise), L.conv_tf_to_torch(pointwise)
end

function L.separable_torch_to_tf(depthwise, pointwise, mult)
  return L.depthwise_torch_to_tf(depthwise, mult), L.conv_torch_to_tf(pointwise)
end

-- Flatten -> Dense ----------------------------------------------------------

local function fmap_of(fmap, what)
  if type(fmap) ~= "table" or #fmap < 2 then
    fail("%s: feature map must be a table {spatial.., channels}, e.g. {h, w, c}", what)
  end
  for _, v in ipairs(fmap) do
    if math.type(v) ~= "integer" or v < 1 then
      fail("%s: feature map sizes must be positive integers", what)
    end
  end
  return fmap
end

-- Keras Dense kernel (h*w*c, units) after a Flatten of NHWC maps ->
-- torch Linear weight (units, c*h*w) after nn.Flatten of NCHW maps. fmap is
-- the feature map shape as Keras sees it, {h, w, c} ({l, c} for 1-D,
-- {d, h, w, c} for 3-D).
function L.flatten_dense_tf_to_torch(kernel, fmap)
  fmap_of(fmap, "flatten_dense_tf_to_torch")
  need_rank(kernel, "flatten_dense_tf_to_torch", 2)
  local rows, units = kernel.shape[1], kernel.shape[2]
  if rows ~= product(fmap) then
    fail("flatten_dense_tf_to_torch: kernel %s has %d rows, feature map {%s} holds %d",
      shape_str(kernel), rows, table.concat(fmap, ","), product(fmap))
  end
  local k = #fmap -- kernel viewed as (s1.., c, units): k+1 dims
  local shape = copy(fmap)
  shape[#shape + 1] = units
  local perm = { k + 1, k }
  for i = 1, k - 1 do perm[#perm + 1] = i end
  return kernel:reshape(table.unpack(shape)):permute(table.unpack(perm)):reshape(units, rows)
end

-- torch Linear weight (units, c*h*w) after nn.Flatten of NCHW -> Keras
-- Dense kernel (h*w*c, units) after Flatten of NHWC; fmap as above,
-- {h, w, c} (the Keras view).
function L.flatten_dense_torch_to_tf(weight, fmap)
  fmap_of(fmap, "flatten_dense_torch_to_tf")
  need_rank(weight, "flatten_dense_torch_to_tf", 2)
  local units, cols = weight.shape[1], weight.shape[2]
  if cols ~= product(fmap) then
    fail("flatten_dense_torch_to_tf: weight %s has %d columns, feature map {%s} holds %d",
      shape_str(weight), cols, table.concat(fmap, ","), product(fmap))
  end
  local k = #fmap
  local shape = { units, fmap[k] }
  for i = 1, k - 1 do shape[#shape + 1] = fmap[i] end
  local perm = {} -- (units, c, s1..) -> (s1.., c, units)
  for i = 3, k + 1 do perm[#perm + 1] = i end
  perm[#perm + 1] = 2
  perm[#perm + 1] = 1
  return weight:reshape(table.unpack(shape)):permute(table.unpack(perm)):reshape(cols, units)
end

-- The feature map each Flatten of a Keras Sequential config flattens,
-- found by running the layer shapes from the input: {[name of the first
-- layer after the Flatten] = {h, w, c}} (Keras's view, channels last), for
-- flatten_dense_*. config is graft.keras.config's table (or its "config"
-- part). Knows InputLayer, Conv1D/2D/3D, Max/AveragePooling1D/2D/3D,
-- ZeroPadding and shape-keeping layers (BatchNormalization, Activation,
-- ReLU, Dropout...); a Flatten after another layer is an error naming that
-- layer (give the feature map by hand then). channels_first Flatten needs no
-- reorder and is left out.
local KEEP_SHAPE = { BatchNormalization = true, Activation = true, ReLU = true, LeakyReLU = true,
  Dropout = true, SpatialDropout1D = true, SpatialDropout2D = true, SpatialDropout3D = true,
  LayerNormalization = true, GaussianNoise = true, ELU = true, Softmax = true, PReLU = true }

local function list_of(v, d)
  if type(v) == "table" then return v end
  local out = {}
  for i = 1, d do out[i] = v end
  return out
end

-- Keras's conv_output_length / pooling output for one spatial axis.
local function out_len(n, k, s, pad, dil)
  if math.type(n) ~= "integer" then return nil end
  local ek = (k - 1) * (dil or 1) + 1
  if pad == "same" then return (n + s - 1) // s end
  if pad == "valid" then return (n - ek) // s + 1 end
  return nil
end

function L.keras_flatten_fmaps(config)
  if type(config) ~= "table" then fail("keras_flatten_fmaps: config must be a table") end
  local c = config.config or config
  if type(c.layers) ~= "table" or (config.class_name and config.class_name ~= "Sequential") then
    fail("keras_flatten_fmaps: only Sequential configs (give the feature map by hand)")
  end
  local shape, out, after, lost = nil, {}, nil, "the input"
  for _, l in ipairs(c.layers) do
    local cls, lc = l.class_name, l.config or {}
    if after then
      out[lc.name] = after
      after = nil
    end
    local d = cls:match("^Conv(%d)D$") or cls:match("Pooling(%d)D$") or cls:match("^ZeroPadding(%d)D$")
    d = d and tonumber(d)
    if cls == "InputLayer" or (shape == nil and (lc.batch_input_shape or lc.batch_shape)) then
      local b = lc.batch_input_shape or lc.batch_shape
      shape = {}
      for i = 2, #b do shape[i - 1] = b[i] end
    end
    if cls == "InputLayer" then -- nothing more
    elseif cls == "Flatten" and not shape then
      fail("keras_flatten_fmaps: Flatten %q: the shape of its input is not known here (after %s); "
        .. "give the feature map by hand", tostring(lc.name), lost)
    elseif not shape then -- unknown until an input layer
    elseif cls == "Flatten" then
      if lc.data_format ~= "channels_first" and #shape >= 2 then
        for _, v in ipairs(shape) do
          if math.type(v) ~= "integer" then
            fail("keras_flatten_fmaps: Flatten %q: feature map size unknown", tostring(lc.name))
          end
        end
        after = shape
      end
      shape = { product(shape) }
    elseif d and #shape == d + 1 and lc.data_format ~= "channels_first" then
      local new = {}
      if cls:match("^ZeroPadding") then
        local p = lc.padding
        for i = 1, d do
          local pi = type(p) == "table" and p[i] or p
          local lo, hi = type(pi) == "table" and pi[1] or pi, type(pi) == "table" and pi[2] or pi
          new[i] = shape[i] + lo + hi
        end
        new[d + 1] = shape[d + 1]
      else
        local k = list_of(lc.kernel_size or lc.pool_size, d)
        local s = list_of(lc.strides or lc.pool_size, d)
        local dil = list_of(lc.dilation_rate or 1, d)
        for i = 1, d do new[i] = out_len(shape[i], k[i], s[i], lc.padding, dil[i]) end
        new[d + 1] = lc.filters or shape[d + 1]
      end
      for i = 1, d do
        if new[i] == nil then shape, lost = nil, string.format("layer %q", tostring(lc.name)) end
      end
      if shape then shape = new end
    elseif KEEP_SHAPE[cls] then -- same shape
    elseif cls == "Dense" then
      shape[#shape] = lc.units
    else
      shape, lost = nil, string.format("layer %q (%s)", tostring(lc.name), tostring(cls))
    end
  end
  return out
end

-- Gates -------------------------------------------------------------------

-- gates(t, "ifco", "ifco" [, dim]): t holds len(from) equal blocks along
-- dim (default 1), named by the letters of `from`; returns them in the
-- order of `to` (same letters). The blocks are views; the result is a cat.
function L.gates(t, from, to, dim)
  need_tensor(t, "gates")
  dim = dim or 1
  local n = #from
  if n == 0 or #to ~= n then fail("gates: %q and %q must name the same gates", from, to) end
  local size = t.shape[dim < 0 and #t.shape + 1 + dim or dim]
  if not size or size % n ~= 0 then
    fail("gates: tensor %s: dim %d does not split into %d gates", shape_str(t), dim, n)
  end
  local blocks = t:chunk(n, dim)
  local by = {}
  for i = 1, n do
    local c = from:sub(i, i)
    if by[c] then fail("gates: gate %q appears twice in %q", c, from) end
    by[c] = blocks[i]
  end
  local out = {}
  for i = 1, n do
    local c = to:sub(i, i)
    if not by[c] then fail("gates: gate %q of %q is not in %q", c, to, from) end
    out[i] = by[c]
  end
  if from == to then return t end
  return core.cat(out, dim)
end

local function gate_units(kernel, recurrent, ngates, what)
  need_rank(kernel, what .. " kernel", 2)
  need_rank(recurrent, what .. " recurrent kernel", 2)
  local units = recurrent.shape[1]
  if recurrent.shape[2] ~= ngates * units or kernel.shape[2] ~= ngates * units then
    fail("%s: kernel %s and recurrent kernel %s are not (in, %d*units) and (units, %d*units)",
      what, shape_str(kernel), shape_str(recurrent), ngates, ngates)
  end
  return units
end

local function zeros_like(t)
  return core.zeros(copy(t.shape), t.dtype)
end

-- Keras LSTM (kernel (in, 4u), recurrent_kernel (u, 4u), bias (4u) or nil),
-- gates i,f,c,o -> torch nn.LSTM layer {weight_ih (4u, in), weight_hh
-- (4u, u), bias_ih, bias_hh}: torch's i,f,g,o is the same order; Keras has
-- one bias, given to bias_ih, with bias_hh zero (torch adds the two).
function L.lstm_keras_to_torch(kernel, recurrent, bias)
  local u = gate_units(kernel, recurrent, 4, "lstm_keras_to_torch")
  local b = bias or core.zeros({ 4 * u }, kernel.dtype)
  return { weight_ih = kernel:t(), weight_hh = recurrent:t(), bias_ih = b, bias_hh = zeros_like(b) }
end

-- torch nn.LSTM layer -> Keras LSTM {kernel, recurrent_kernel, bias}; the
-- bias is bias_ih + bias_hh (lazy).
function L.lstm_torch_to_keras(w_ih, w_hh, b_ih, b_hh)
  local r = { kernel = w_ih:t(), recurrent_kernel = w_hh:t() }
  if b_ih and b_hh then r.bias = b_ih + b_hh else r.bias = b_ih or b_hh end
  return r
end

-- TF1 tf.compat.v1.nn.rnn_cell.LSTMCell / BasicLSTMCell (no peepholes, no
-- projection): kernel (in+u, 4u) over concat(x, h), bias (4u), gates
-- i,j,f,o (j the candidate), the forget gate computed as
-- sigmoid(f + forget_bias) (default 1.0 in both cells). -> torch nn.LSTM
-- layer with forget_bias folded into the forget block of bias_ih.
function L.lstm_tf1_to_torch(kernel, bias, forget_bias)
  need_rank(kernel, "lstm_tf1_to_torch kernel", 2)
  local cols = kernel.shape[2]
  if cols % 4 ~= 0 or kernel.shape[1] <= cols // 4 then
    fail("lstm_tf1_to_torch: kernel %s is not (in+units, 4*units)", shape_str(kernel))
  end
  local u = cols // 4
  local nin = kernel.shape[1] - u
  local w = L.gates(kernel, "ijfo", "ifjo", 2):t()
  local b = bias and L.gates(bias, "ijfo", "ifjo") or core.zeros({ cols }, kernel.dtype)
  forget_bias = forget_bias == nil and 1.0 or forget_bias
  if forget_bias ~= 0 then
    local parts = b:chunk(4, 1)
    b = core.cat({ parts[1], parts[2] + forget_bias, parts[3], parts[4] }, 1)
  end
  return { weight_ih = w:narrow(2, 1, nin), weight_hh = w:narrow(2, nin + 1, u),
           bias_ih = b, bias_hh = zeros_like(b) }
end

-- ONNX LSTM (W (dirs, 4u, in), R (dirs, 4u, u), B (dirs, 8u) = Wb then
-- Rb; gates i,o,f,c) direction d (1-based, default 1) -> torch layer.
function L.lstm_onnx_to_torch(W, R, B, d)
  d = d or 1
  local r = {
    weight_ih = L.gates(W:select(1, d), "iofc", "ifco"),
    weight_hh = L.gates(R:select(1, d), "iofc", "ifco"),
  }
  local u = r.weight_hh.shape[2]
  if B then
    local b = B:select(1, d)
    r.bias_ih = L.gates(b:narrow(1, 1, 4 * u), "iofc", "ifco")
    r.bias_hh = L.gates(b:narrow(1, 4 * u + 1, 4 * u), "iofc", "ifco")
  else
    r.bias_ih = core.zeros({ 4 * u }, W.dtype)
    r.bias_hh = core.zeros({ 4 * u }, W.dtype)
  end
  return r
end

-- torch layer -> ONNX W, R, B for one direction (shapes (1, ..); cat them
-- along dim 1 for a bidirectional ONNX LSTM: forward first).
function L.lstm_torch_to_onnx(w_ih, w_hh, b_ih, b_hh)
  local W = L.gates(w_ih, "ifco", "iofc"):unsqueeze(1)
  local R = L.gates(w_hh, "ifco", "iofc"):unsqueeze(1)
  local B = core.cat({ L.gates(b_ih, "ifco", "iofc"), L.gates(b_hh, "ifco", "iofc") }, 1):unsqueeze(1)
  return W, R, B
end

-- Keras GRU with reset_after=True (bias (2, 3u): row 1 input bias, row 2
-- recurrent bias; the Keras 2/3 default), gates z,r,h -> torch nn.GRU
-- layer (gates r,z,n; torch's candidate n = tanh(W_in x + b_in + r *
-- (W_hn h + b_hn)) is reset_after's). A reset_after=False GRU (bias (3u))
-- computes tanh(W x + U (r * h) + b), which nn.GRU cannot express: refused.
function L.gru_keras_to_torch(kernel, recurrent, bias)
  local u = gate_units(kernel, recurrent, 3, "gru_keras_to_torch")
  if bias and #bias.shape == 1 then
    fail("gru_keras_to_torch: bias %s is a reset_after=False GRU's: its candidate applies "
      .. "the reset gate before the recurrent kernel, which torch's nn.GRU cannot express", shape_str(bias))
  end
  if bias and (#bias.shape ~= 2 or bias.shape[1] ~= 2 or bias.shape[2] ~= 3 * u) then
    fail("gru_keras_to_torch: bias %s is not (2, 3*units)", shape_str(bias))
  end
  local r = { weight_ih = L.gates(kernel, "zrh", "rzh", 2):t(),
              weight_hh = L.gates(recurrent, "zrh", "rzh", 2):t() }
  if bias then
    r.bias_ih = L.gates(bias:select(1, 1), "zrh", "rzh")
    r.bias_hh = L.gates(bias:select(1, 2), "zrh", "rzh")
  else
    r.bias_ih = core.zeros({ 3 * u }, kernel.dtype)
    r.bias_hh = core.zeros({ 3 * u }, kernel.dtype)
  end
  return r
end

-- torch nn.GRU layer -> Keras GRU(reset_after=True) {kernel,
-- recurrent_kernel, bias (2, 3u)}.
function L.gru_torch_to_keras(w_ih, w_hh, b_ih, b_hh)
  local r = { kernel = L.gates(w_ih, "rzn", "zrn"):t(), recurrent_kernel = L.gates(w_hh, "rzn", "zrn"):t() }
  if b_ih or b_hh then
    local n = (b_ih or b_hh).shape[1]
    b_ih = b_ih or core.zeros({ n }, b_hh.dtype)
    b_hh = b_hh or core.zeros({ n }, b_ih.dtype)
    r.bias = core.stack({ L.gates(b_ih, "rzn", "zrn"), L.gates(b_hh, "rzn", "zrn") }, 1)
  end
  return r
end

-- Keras GRU with reset_after=False (bias (3u), gates z,r,h): the candidate
-- is tanh(W_h x + U_h (r * h) + b_h), the reset gate applied BEFORE the
-- recurrent matmul; torch's nn.GRU applies it after (r * (W_hn h + b_hn)),
-- so no nn.GRU computes this. The result has nn.GRU's parameter names and
-- shapes (gates r,z,n) for a module implementing Keras's variant
-- (docs/cookbook/keras_rnn_torch.md gives one): weight_ih, weight_hh,
-- bias_ih = the bias, bias_hh = zeros (b_hn sits outside r here, so any
-- split of the bias between the two computes the same).
function L.gru_reset_before_keras_to_torch(kernel, recurrent, bias)
  local u = gate_units(kernel, recurrent, 3, "gru_reset_before_keras_to_torch")
  if bias and (#bias.shape ~= 1 or bias.shape[1] ~= 3 * u) then
    fail("gru_reset_before_keras_to_torch: bias %s is not (3*units): a reset_after=True GRU's "
      .. "(2, 3*units) bias goes through gru_keras_to_torch", shape_str(bias))
  end
  local b = bias and L.gates(bias, "zrh", "rzh") or core.zeros({ 3 * u }, kernel.dtype)
  return { weight_ih = L.gates(kernel, "zrh", "rzh", 2):t(),
           weight_hh = L.gates(recurrent, "zrh", "rzh", 2):t(),
           bias_ih = b, bias_hh = zeros_like(b) }
end

-- The reverse: a reset-before GRU module's nn.GRU-named parameters ->
-- Keras GRU(reset_after=False) {kernel, recurrent_kernel, bias (3u) =
-- b_ih + b_hh, lazy}. From a real nn.GRU (reset after) this is NOT the same
-- computation: use gru_torch_to_keras for those.
function L.gru_reset_before_torch_to_keras(w_ih, w_hh, b_ih, b_hh)
  local r = { kernel = L.gates(w_ih, "rzn", "zrn"):t(), recurrent_kernel = L.gates(w_hh, "rzn", "zrn"):t() }
  local b = (b_ih and b_hh) and (b_ih + b_hh) or b_ih or b_hh
  if b then r.bias = L.gates(b, "rzn", "zrn") end
  return r
end

-- TF1 tf.compat.v1.nn.rnn_cell.GRUCell (gates/kernel (in+u, 2u) r,u over
-- concat(x, h); gates/bias (2u); candidate/kernel (in+u, u) over
-- concat(x, r*h); candidate/bias (u); h' = u*h + (1-u)*c) -> Keras GRU with
-- reset_after=False {kernel (in, 3u), recurrent_kernel (u, 3u), bias (3u)}
-- z,r,h: the same computation (Keras's z is TF1's u).
function L.gru_tf1_to_keras(gates_kernel, gates_bias, cand_kernel, cand_bias)
  need_rank(gates_kernel, "gru_tf1_to_keras gates kernel", 2)
  local u = cand_kernel.shape[2]
  local nin = gates_kernel.shape[1] - u
  if gates_kernel.shape[2] ~= 2 * u or cand_kernel.shape[1] ~= nin + u or nin < 1 then
    fail("gru_tf1_to_keras: gates kernel %s and candidate kernel %s are not (in+u, 2u) and (in+u, u)",
      shape_str(gates_kernel), shape_str(cand_kernel))
  end
  local k = core.cat({ L.gates(gates_kernel, "ru", "ur", 2), cand_kernel }, 2)
  local b = core.cat({
    gates_bias and L.gates(gates_bias, "ru", "ur") or core.zeros({ 2 * u }, gates_kernel.dtype),
    cand_bias or core.zeros({ u }, gates_kernel.dtype) }, 1)
  return { kernel = k:narrow(1, 1, nin), recurrent_kernel = k:narrow(1, nin + 1, u), bias = b }
end

-- torch nn.LSTM/GRU/RNN parameter names of layer `layer` (0-based, as
-- torch counts: stacked layers l0, l1, ...), reverse = true for the
-- backward direction of a bidirectional RNN: {weight_ih = "weight_ih_l0",
-- ...}. prefix (e.g. "rnn.") is put in front.
function L.torch_rnn_names(layer, reverse, prefix)
  local sfx = "_l" .. (layer or 0) .. (reverse and "_reverse" or "")
  prefix = prefix or ""
  return { weight_ih = prefix .. "weight_ih" .. sfx, weight_hh = prefix .. "weight_hh" .. sfx,
           bias_ih = prefix .. "bias_ih" .. sfx, bias_hh = prefix .. "bias_hh" .. sfx }
end

-- Put a layer table from the helpers above under torch's names into out.
function L.torch_rnn_layer(out, parts, layer, reverse, prefix)
  local names = L.torch_rnn_names(layer, reverse, prefix)
  for k, v in pairs(parts) do
    if not names[k] then fail("torch_rnn_layer: %q is no torch RNN parameter", k) end
    out[names[k]] = v
  end
  return out
end

-- Keras Bidirectional(LSTM/GRU) weight names: the wrapped layers are
-- "forward_<name>" and "backward_<name>" (Keras 2 .h5 paths
-- <bidi>/forward_<name>/kernel...; the backward layer reads the sequence
-- reversed exactly as torch's _reverse direction does).
function L.keras_bidirectional_names(name)
  return "forward_" .. name, "backward_" .. name
end

-- Biases ------------------------------------------------------------------

-- One bias from two that are added at run time (torch bias_ih + bias_hh ->
-- Keras/TF/ONNX-less single bias). Lazy.
function L.bias_fold(a, b) return a + b end

-- Attention -----------------------------------------------------------------

local function qkv_sizes(n_head, n_kv_head, head_dim, what)
  n_kv_head = n_kv_head or n_head
  for _, v in ipairs({ n_head, n_kv_head, head_dim }) do
    if math.type(v) ~= "integer" or v < 1 then
      fail("%s: n_head, n_kv_head and head_dim must be positive integers", what)
    end
  end
  if n_head % n_kv_head ~= 0 then
    fail("%s: n_head %d is not a multiple of n_kv_head %d", what, n_head, n_kv_head)
  end
  return n_head * head_dim, n_kv_head * head_dim
end

-- A fused projection (weight (q+2kv, in) or bias (q+2kv)) laid out as
-- concat(q, k, v) along dim 1 (HF Phi-3 / fused Llama qkv_proj, torch
-- MultiheadAttention in_proj_weight with n_kv_head = n_head) -> q, k, v
-- views: q n_head*head_dim rows, k and v n_kv_head*head_dim each.
function L.qkv_split(t, n_head, n_kv_head, head_dim)
  need_tensor(t, "qkv_split")
  local q, kv = qkv_sizes(n_head, n_kv_head, head_dim, "qkv_split")
  if t.shape[1] ~= q + 2 * kv then
    fail("qkv_split: tensor %s: dim 1 is not %d + 2 * %d", shape_str(t), q, kv)
  end
  return t:narrow(1, 1, q), t:narrow(1, q + 1, kv), t:narrow(1, q + kv + 1, kv)
end

-- q, k, v -> the fused concat(q, k, v) along dim 1.
function L.qkv_merge(q, k, v)
  if k.shape[1] ~= v.shape[1] then
    fail("qkv_merge: k %s and v %s differ", shape_str(k), shape_str(v))
  end
  return core.cat({ q, k, v }, 1)
end

-- Rows of t (weight (rows, in) or bias (rows)) viewed per head as
-- (heads, a, b, ...) with (a, b) = (2, rows/heads/2), or the other way
-- round when `interleaved` is the source order, axes 2 and 3 swapped, back
-- to rows. n_kv_head counts the heads whenever it differs from n_head (as
-- llama.cpp's script does for k).
local function rope_swap(what, t, n_head, n_kv_head, interleaved)
  need_tensor(t, what)
  local n = (n_kv_head and n_kv_head ~= n_head) and n_kv_head or n_head
  local rows = t.shape[1]
  if math.type(n) ~= "integer" or n < 1 or rows % (2 * n) ~= 0 then
    fail("%s: tensor %s: %d rows do not split into %s heads of pairs", what, shape_str(t), rows, tostring(n))
  end
  local half = rows // n // 2
  local shape = interleaved and { n, half, 2 } or { n, 2, half }
  for i = 2, #t.shape do shape[#shape + 1] = t.shape[i] end
  return t:reshape(table.unpack(shape)):transpose(2, 3):reshape(table.unpack(t.shape))
end

-- llama.cpp's convert_hf_to_gguf.py permute for q_proj / k_proj: HF keeps
-- the rotary halves of each head apart ([x0..x(d/2-1) | x(d/2)..]),
-- GGUF/Meta interleaves them (x0, x(d/2), x1, ...). n_head heads for q,
-- n_kv_head for k.
function L.rope_permute(t, n_head, n_kv_head)
  return rope_swap("rope_permute", t, n_head, n_kv_head, false)
end

-- The inverse (GGUF/Meta interleaved -> HF halves), what HF's
-- convert_llama_weights_to_hf.py undoes.
function L.rope_unpermute(t, n_head, n_kv_head)
  return rope_swap("rope_unpermute", t, n_head, n_kv_head, true)
end

-- BatchNorm ----------------------------------------------------------------

-- Fold an inference BatchNorm that follows a conv (or Linear) into it:
-- y = gamma * (conv(x) - mean) / sqrt(var + eps) + beta. w (out, ...)
-- torch layout (out channels first), b (out) or nil; bn = {gamma, beta,
-- mean, var} (torch weight, bias, running_mean, running_var; Keras gamma,
-- beta, moving_mean, moving_variance), eps (torch default 1e-5, Keras
-- 1e-3). Returns w', b' lazily: w * s (s = gamma / sqrt(var + eps) on
-- dim 1), (b - mean) * s + beta.
function L.bn_fold(w, b, bn, eps)
  if type(bn) ~= "table" then fail("bn_fold: bn must be a table {gamma, beta, mean, var}") end
  need_tensor(w, "bn_fold")
  local gamma, beta = bn.gamma or bn.weight, bn.beta or bn.bias
  local mean, var = bn.mean or bn.running_mean, bn.var or bn.running_var
  if not (gamma and beta and mean and var) then
    fail("bn_fold: bn needs gamma, beta, mean and var (or weight, bias, running_mean, running_var)")
  end
  local out = w.shape[1]
  for _, p in ipairs({ gamma, beta, mean, var }) do
    if #p.shape ~= 1 or p.shape[1] ~= out then
      fail("bn_fold: BatchNorm parameter %s does not match %d output channels of %s",
        shape_str(p), out, shape_str(w))
    end
  end
  local s = gamma * (var + (eps or 1e-5)):rsqrt()
  local shape = { out }
  for _ = 2, #w.shape do shape[#shape + 1] = 1 end
  local w2 = w * s:reshape(table.unpack(shape))
  local b2 = ((b and (b - mean)) or -mean) * s + beta
  return w2, b2
end

return L
