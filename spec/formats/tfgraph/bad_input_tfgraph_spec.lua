-- Malformed GraphDef / MetaGraphDef / SavedModel bytes and misuse of the
-- graph patcher: each gives a clear error naming the file (and the node
-- where there is one), never a crash. The bytes are made here by a small
-- protobuf encoder.
local graft = require "graft"
local H = require "helper"

local function varint(n)
  local t = {}
  repeat
    local b = n % 128
    n = n // 128
    t[#t + 1] = string.char(n > 0 and b + 128 or b)
  until n == 0
  return table.concat(t)
end
local function len(num, payload) return varint(num * 8 + 2) .. varint(#payload) .. payload end
local function vint(num, v) return varint(num * 8) .. varint(v) end

-- NodeDef with attr "value" = tensor bytes.
local function const(name, tensor)
  local attr = len(1, "value") .. len(2, len(8, tensor))
  return len(1, len(1, name) .. len(2, "Const") .. len(5, attr))
end
local function shape(...)
  local s = ""
  for _, d in ipairs({ ... }) do s = s .. len(2, vint(1, d)) end
  return len(2, s)
end

local function write(bytes, name)
  local p = H.tmpdir() .. "/" .. (name or "g.pb")
  H.write(p, bytes)
  return p
end

local function open_err(bytes, name)
  local p = write(bytes, name)
  local msg = H.raises(function() graft.open(p) end)
  assert.is_truthy(msg:find(p, 1, true), msg)
  return msg
end

describe("bad GraphDef input", function()
  it("a record running past the end of the file", function()
    local g = const("w", vint(1, 1) .. shape(2) .. len(4, string.rep("\0", 8)))
    local msg = open_err(g:sub(1, #g - 3))
    assert.is_truthy(msg:find("runs past the end", 1, true), msg)
  end)

  it("a varint that never ends and garbage bytes", function()
    local msg = open_err(string.rep("\xff", 12))
    assert.is_truthy(msg:find("bad protobuf tag", 1, true), msg)
    msg = open_err("\x0a\x02\x0b\x00")
    assert.is_truthy(msg:find("wire type", 1, true) or msg:find("node", 1, true), msg)
  end)

  it("a node field of the wrong wire type", function()
    local msg = open_err(len(1, vint(1, 5)))
    assert.is_truthy(msg:find("not length-delimited", 1, true), msg)
  end)

  it("tensor_content of the wrong size, naming the node", function()
    local msg = open_err(const("layer/w", vint(1, 1) .. shape(2, 3) .. len(4, string.rep("\0", 20))))
    assert.is_truthy(msg:find("layer/w", 1, true), msg)
    assert.is_truthy(msg:find("tensor_content holds 20 bytes", 1, true), msg)
  end)

  it("negative, too many and overflowing dimensions", function()
    local neg = string.rep("\xff", 9) .. "\x01" -- -1 as a 64-bit varint
    local msg = open_err(const("n", vint(1, 1) .. len(2, len(2, varint(8) .. neg)) .. len(5, "\0\0\0\0")))
    assert.is_truthy(msg:find("dimension 1", 1, true), msg)
    local dims = {}
    for i = 1, 33 do dims[i] = 1 end
    msg = open_err(const("d", vint(1, 1) .. shape(table.unpack(dims))))
    assert.is_truthy(msg:find("33 dimensions", 1, true), msg)
    msg = open_err(const("o", vint(1, 1) .. shape(2 ^ 40 // 1, 2 ^ 40 // 1)))
    assert.is_truthy(msg:find("\"o\"", 1, true), msg)
  end)

  it("unknown rank, no dtype, no value", function()
    local msg = open_err(const("u", vint(1, 1) .. len(2, vint(3, 1))))
    assert.is_truthy(msg:find("unknown rank", 1, true), msg)
    msg = open_err(const("z", shape(1)))
    assert.is_truthy(msg:find("no dtype", 1, true), msg)
    msg = open_err(len(1, len(1, "c") .. len(2, "Const")))
    assert.is_truthy(msg:find("without a tensor", 1, true), msg)
  end)

  it("two tensors in one attr value", function()
    local t = vint(1, 1) .. shape(1) .. len(5, "\0\0\0\0")
    local attr = len(1, "value") .. len(2, len(8, t) .. len(8, t))
    local msg = open_err(len(1, len(1, "x") .. len(2, "Const") .. len(5, attr)))
    assert.is_truthy(msg:find("two tensors", 1, true), msg)
  end)

  it("a string tensor_content whose lengths overrun is refused when read", function()
    local p = write(const("s", vint(1, 7) .. shape(2) .. len(4, "\x05\x09abc")))
    local m = graft.open(p)
    local msg = H.raises(function() m.s:totable() end)
    assert.is_truthy(msg:find("runs past the end", 1, true), msg)
  end)

  it("duplicate Const names", function()
    local t = vint(1, 1) .. len(5, "\0\0\0\0")
    local msg = open_err(const("w", t) .. const("w", t))
    assert.is_truthy(msg:find("appears twice", 1, true), msg)
  end)

  it("messages nested deeper than protobuf allows (.meta)", function()
    -- signature_def defaults: TensorProto -> variant_val -> tensors -> ...
    local t = ""
    for _ = 1, 150 do t = len(15, len(3, t)) end
    local sig = len(4, len(1, "k") .. len(2, t))
    local meta = len(5, len(1, "serving_default") .. len(2, sig))
    local msg = open_err(meta, "x.meta")
    assert.is_truthy(msg:find("nested more than 100 deep", 1, true), msg)
  end)

  it("a SavedModel without meta graphs, or a broken one", function()
    local dir = H.tmpdir()
    H.write(dir .. "/saved_model.pb", vint(1, 1))
    local msg = H.raises(function() graft.open(dir) end)
    assert.is_truthy(msg:find("no meta graph", 1, true), msg)
    H.write(dir .. "/saved_model.pb", vint(1, 1) .. len(2, len(1, "\xff")))
    msg = H.raises(function() graft.open(dir) end)
    assert.is_truthy(msg:find("saved_model.pb", 1, true), msg)
  end)
end)

describe("bad patches", function()
  local base = function()
    return write(const("w", vint(1, 1) .. shape(2) .. len(4, string.rep("\0", 8)))
      .. const("i", vint(1, 3) .. len(7, "\x01")))
  end

  it("names a Const the graph has not", function()
    local b = base()
    local msg = H.raises(function()
      graft.save(H.tmpdir() .. "/o.pb", { nope = graft.zeros({ 2 }) }, { base = b })
    end)
    assert.is_truthy(msg:find("no Const of that name", 1, true), msg)
  end)

  it("a different dtype or shape", function()
    local b = base()
    local msg = H.raises(function()
      graft.save(H.tmpdir() .. "/o.pb", { w = graft.zeros({ 2 }, "float64") }, { base = b })
    end)
    assert.is_truthy(msg:find("the Const is float32, the tensor float64", 1, true), msg)
    msg = H.raises(function()
      graft.save(H.tmpdir() .. "/o.pb", { w = graft.zeros({ 3 }) }, { base = b })
    end)
    assert.is_truthy(msg:find("shape [2], the tensor [3]", 1, true), msg)
  end)

  it("refuses to write over the base graph, and needs a base", function()
    local b = base()
    local m = graft.open(b)
    local msg = H.raises(function() graft.save(b, m, { base = b }) end)
    assert.is_truthy(msg:find("refusing to overwrite", 1, true), msg)
    msg = H.raises(function() graft.save(H.tmpdir() .. "/o.pb", m) end)
    assert.is_truthy(msg:find("opts.base", 1, true), msg)
  end)

  it("a failed patch leaves no output behind", function()
    local dir = H.tmpdir()
    pcall(graft.save, dir .. "/o.pb", { w = graft.zeros({ 3 }) }, { base = base() })
    assert.are.same({}, H.ls(dir))
  end)
end)
