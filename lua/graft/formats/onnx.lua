-- graft.formats.onnx: ONNX models (.onnx: graph initializers and Constant
-- values as tensors, the graph's facts in graft.meta) and lone TensorProto
-- files (.pb, as ONNX's test data sets hold them); writing patches the
-- initializers of a base model, every other byte kept, optionally moving
-- large tensors to an external data file.
-- Bytes live in C (src/formats/onnx/); this module recognises the files
-- and gathers the save options.

local json = require "graft.json"

local M = { name = "onnx" }

M.formats = {
  { name = "onnx", description = "ONNX model .onnx (initializers and Constant values as "
      .. "tensors); written as a patched copy of a model",
    extensions = { "onnx" }, read = true, write = true,
    save_options = {
      base = "the .onnx whose initializers are replaced or added (required)",
      external_data = "file name (beside the output) that tensors of at least "
        .. "external_threshold bytes are moved to",
      external_threshold = "bytes (default 1024)",
    } },
  { name = "onnx_tensor", description = "one ONNX TensorProto in a .pb (test_data_set_*/input_0.pb)",
    read = true, write = false },
}

local function fail(fmt, ...)
  error("graft: " .. string.format(fmt, ...), 0)
end

-- Protobuf wire records of s from byte i: calls f(field, wiretype) for
-- each record that lies in s, stops at the first that runs past its end
-- (a head is a prefix of the file). false when the bytes are not records.
local function varint(s, i)
  local v, shift = 0, 0
  while i <= #s and shift < 64 do
    local b = s:byte(i)
    v = v | ((b & 0x7f) << shift)
    i = i + 1
    if b < 0x80 then return v, i end
    shift = shift + 7
  end
  return nil, i
end

local function walk(s, f)
  local i, n = 1, 0
  while i <= #s do
    local tag, j = varint(s, i)
    if not tag then return n > 0 end
    local field, wt = tag >> 3, tag & 7
    if field == 0 or not f(field, wt, n) then return false end
    if wt == 0 then
      local v, k = varint(s, j)
      if not v then return n > 0 end
      i = k
    elseif wt == 1 then i = j + 8
    elseif wt == 5 then i = j + 4
    elseif wt == 2 then
      local len, k = varint(s, j)
      if not len then return n > 0 end
      if len < 0 or len > #s - k + 1 then return true end
      i = k + len
    else
      return false
    end
    n = n + 1
  end
  return n > 0
end

-- ModelProto fields: 1 ir_version and 5 model_version are varints, the
-- others (producer, domain, doc, graph, opsets, metadata, training,
-- functions, configuration) length-delimited.
local model_fields = { [1] = 0, [2] = 2, [3] = 2, [4] = 2, [5] = 0, [6] = 2, [7] = 2,
                       [8] = 2, [14] = 2, [20] = 2, [25] = 2, [26] = 2 }

local function looks_model(head)
  return walk(head, function(field, wt) return model_fields[field] == wt end)
end

-- A TensorProto as ONNX writes it starts with dims (field 1, varints:
-- proto2, not packed) or, for a scalar, data_type (field 2). A TF GraphDef
-- starts with a length-delimited node (1), library (2) or versions (4).
local tensor_fields = { [1] = true, [2] = 0, [3] = 2, [4] = 2, [5] = 2, [6] = 2, [7] = 2,
                        [8] = 2, [9] = 2, [10] = 2, [11] = 2, [12] = 2, [13] = 2,
                        [14] = 0, [16] = 2 }

local function looks_tensor(head)
  return walk(head, function(field, wt, n)
    if n == 0 then return (field == 1 or field == 2) and wt == 0 end
    local want = tensor_fields[field]
    return want == true and (wt == 0 or wt == 2) or want == wt
  end)
end

-- ONNX has no magic number: a .onnx name plus ModelProto records at the
-- start; a .pb whose first record is a TensorProto's dims or data_type.
function M.detect(head, path, ctx)
  local lower = path:lower()
  if ctx.stage == "bytes" and lower:match("%.onnx$") and looks_model(head) then
    return "onnx"
  end
  if ctx.stage == "late" and lower:match("%.pb$") and looks_tensor(head) then
    return "onnx_tensor"
  end
  return nil
end

function M.open(path, _, ctx)
  return ctx.remember(ctx.read(path, ctx.format))
end

-- graft.save(path, tensors, {format = "onnx", base = "in.onnx"}): base
-- with the named initializers (or Constant values) replaced, the others
-- added. Tensors the base keeps in external data files are rewritten too
-- (into the model, or into opts.external_data), so the output never
-- points at the base's files; with opts.external_data, the base's large
-- initializers move there as well. A provenance (graft.provenance) is
-- recorded as metadata_props entries.
function M.save(path, tensors, names, opts, ctx)
  if type(opts.base) ~= "string" then
    fail("%s: format onnx writes a patched copy of a model: pass opts.base = \"model.onnx\"", path)
  end
  local md = { base = opts.base }
  local threshold = 1024
  if opts.external_threshold ~= nil then
    threshold = math.tointeger(opts.external_threshold)
    if not threshold or threshold < 0 then
      fail("%s: external_threshold must be a byte count", path)
    end
    md.external_threshold = tostring(threshold)
  end
  if opts.external_data ~= nil then
    if type(opts.external_data) ~= "string" then
      fail("%s: external_data must be a file name", path)
    end
    md.external_data = opts.external_data
  end
  local base = ctx.open(opts.base, { format = "onnx" })
  local bmeta = ctx.meta(base)
  local external = bmeta.external or {}
  local all, list = {}, {}
  for _, n in ipairs(names) do all[n] = tensors[n]; list[#list + 1] = n end
  for _, n in ipairs(ctx.names(base)) do
    local t = base[n]
    if all[n] == nil and (external[n] or (md.external_data and t.nbytes >= threshold)) then
      all[n] = t
      list[#list + 1] = n
    end
  end
  -- a provenance becomes the model's metadata_props (same keys replaced)
  ctx.write(path, "onnx", list, all, { metadata = md, progress = ctx.progress(path),
    provenance = ctx.provenance and json.encode(ctx.provenance) or nil })
end

return M
