-- Hostile and broken pickles and torch files. None may execute anything
-- (each exploit tries to create a marker file, which must not appear), none
-- may crash or hang; each gives a clear error naming the file or an inert
-- placeholder visible in graft.meta.
local graft = require "graft"
local H = require "helper"

local DIR, MARKER

local function fresh()
  DIR = H.tmpdir()
  MARKER = DIR .. "/pwned"
end

local function no_marker()
  assert.is_false(H.exists(MARKER), "the marker file was created: something ran")
end

-- Pickle opcodes as Lua strings.
local function binunicode(s) return "X" .. string.pack("<I4", #s) .. s end
local function global(mod, name) return "c" .. mod .. "\n" .. name .. "\n" end
local CMD = function() return "touch " .. MARKER end

local function write(name, bytes)
  local p = DIR .. "/" .. name
  H.write(p, bytes)
  return p
end

-- Open a pickle; returns the model (or raises).
local function open_pkl(bytes)
  return graft.open(write("x.pkl", bytes))
end

local function refused(bytes, ...)
  local p = write("x.pkl", bytes)
  local err = H.raises(function() graft.open(p) end)
  assert.truthy(err:find(p, 1, true), "error does not name the file: " .. err)
  for _, s in ipairs({ ... }) do
    assert.truthy(err:find(s, 1, true), "error " .. err .. " does not say " .. s)
  end
  no_marker()
  return err
end

-- A placeholder and nothing run.
local function inert(bytes)
  local m = open_pkl(bytes)
  no_marker()
  return graft.meta(m).tree, graft.meta(m)
end

describe("hostile pickles", function()
  before_each(fresh)

  it("os.system / posix.system via GLOBAL + REDUCE stay placeholders", function()
    for _, mod in ipairs({ "os", "posix", "nt" }) do
      local tree, meta = inert("\x80\x02" .. global(mod, "system") .. binunicode(CMD()) .. "\x85R.")
      assert.are.same({ global = mod .. ".system", args = { CMD() } }, tree)
      assert.are.same({ mod .. ".system" }, meta.globals)
    end
  end)

  it("subprocess calls stay placeholders", function()
    local tree = inert("\x80\x02" .. global("subprocess", "check_output") .. "]("
      .. binunicode("sh") .. binunicode("-c") .. binunicode(CMD()) .. "e\x85R.")
    assert.are.equal("subprocess.check_output", tree.global)
    assert.are.same({ { "sh", "-c", CMD() } }, tree.args)
    tree = inert("\x80\x02" .. global("subprocess", "Popen") .. binunicode(CMD()) .. "\x85R.")
    assert.are.equal("subprocess.Popen", tree.global)
  end)

  it("builtins eval / exec (and Python 2 __builtin__) stay placeholders", function()
    local code = "__import__('os').system('" .. CMD() .. "')"
    for _, g in ipairs({ { "builtins", "eval" }, { "builtins", "exec" }, { "__builtin__", "eval" } }) do
      local tree = inert("\x80\x02" .. global(g[1], g[2]) .. binunicode(code) .. "\x85R.")
      assert.are.equal("builtins." .. g[2], tree.global)
      assert.are.same({ code }, tree.args)
    end
  end)

  it("getattr chains: calling the result of a call is refused", function()
    -- getattr(__import__('os'), 'system')('touch ...')
    local p = "\x80\x02" .. global("builtins", "getattr")
      .. global("builtins", "__import__") .. binunicode("os") .. "\x85R"
      .. binunicode("system") .. "\x86R" .. binunicode(CMD()) .. "\x85R."
    refused(p, "only a global can be called")
    -- the uncalled chain itself is inert data
    local tree = inert("\x80\x02" .. global("builtins", "getattr")
      .. global("builtins", "__import__") .. binunicode("os") .. "\x85R"
      .. binunicode("system") .. "\x86R.")
    assert.are.equal("builtins.getattr", tree.global)
    assert.are.equal("builtins.__import__", tree.args[1].global)
  end)

  it("STACK_GLOBAL tricks", function()
    local function sbu(s) return "\x8c" .. string.char(#s) .. s end
    -- names from the memo, a dotted name, then a call
    local tree = inert("\x80\x04" .. sbu("os") .. "\x94" .. sbu("system") .. "\x94"
      .. "h\x00h\x01\x93" .. sbu(CMD()) .. "\x85R.")
    assert.are.equal("os.system", tree.global)
    tree = inert("\x80\x04" .. sbu("os") .. sbu("path.join") .. "\x93" .. sbu("a") .. "\x85R.")
    assert.are.equal("os.path.join", tree.global)
    -- a module or name that is not a string
    refused("\x80\x04K\x01" .. sbu("system") .. "\x93.", "STACK_GLOBAL needs")
    refused("\x80\x04" .. sbu("os") .. "]\x93.", "STACK_GLOBAL needs")
    refused("\x80\x04" .. sbu("") .. sbu("x") .. "\x93.", "empty module or name")
    refused("\x80\x04\x93.", "stack underflow")
  end)

  it("INST and OBJ make placeholders", function()
    local tree = inert("(S'" .. CMD() .. "'\nios\nsystem\n.")
    assert.are.same({ global = "os.system", args = { CMD() } }, tree)
    tree = inert("(cos\nsystem\nS'" .. CMD() .. "'\no.")
    assert.are.same({ global = "os.system", args = { CMD() } }, tree)
    refused("(o.", "OBJ without a class")
    refused("(K\x01S'x'\no.", "only a global can be called")
  end)

  it("NEWOBJ, BUILD and REDUCE only record their operands", function()
    local tree = inert("\x80\x02" .. global("evil", "Thing") .. ")\x81}" .. binunicode("cmd")
      .. binunicode(CMD()) .. "sb.")
    assert.are.same({ global = "evil.Thing", args = {}, state = { cmd = CMD() } }, tree)
    refused("\x80\x02" .. global("os", "system") .. "K\x01R.", "arguments are not a tuple")
    refused("\x80\x02K\x01K\x02b.", "BUILD on a value that is not an object")
  end)

  it("SETITEM on a list is an error", function()
    refused("\x80\x02]K\x01K\x02s.", "SETITEM(S) on a list")
    refused("\x80\x02](K\x01K\x02u.", "SETITEM(S) on a list")
    refused("\x80\x02K\x07K\x01K\x02s.", "not a dict")
    refused("\x80\x02}K\x01a.", "not a list")
  end)

  it("BINGET of a memo slot never set is an error", function()
    refused("\x80\x02h\x05.", "memo slot 5 is read before it was set")
    refused("\x80\x02j\x00\x00\x01\x00.", "memo slot 65536 is read before it was set")
    refused("\x80\x02K\x01r\xff\xff\xff\xff.", "memo index larger than the pickle could use")
  end)

  it("100000-deep nesting is refused without exhausting the C stack", function()
    refused("\x80\x02" .. string.rep("]", 100000) .. string.rep("a", 99999) .. ".",
      "deeper than")
    refused("\x80\x02" .. string.rep("(", 100000) .. string.rep("t", 100000) .. ".", "deeper than")
    refused("\x80\x02" .. string.rep("}K\x01", 50000) .. "}" .. string.rep("s", 50000) .. ".",
      "deeper than")
  end)

  it("memo sharing cannot expand exponentially; a list inside itself is cut", function()
    local p = "\x80\x02]q\x00" .. string.rep("h\x00h\x00\x86q\x00", 40) .. "."
    refused(p, "expands to more than")
    local tree = inert("\x80\x02]q\x00h\x00a.")
    assert.are.same({}, tree) -- the self-reference became nil
  end)

  it("lengths of 2^40 and other impossible sizes fail at once", function()
    refused("\x80\x04\x8d" .. string.pack("<I8", 1 << 40) .. "abc.", "truncated")
    refused("\x80\x04\x8e" .. string.pack("<I8", 1 << 40) .. "abc.", "truncated")
    refused("\x80\x05\x96" .. string.pack("<I8", -1) .. "abc.", "truncated")
    refused("\x80\x02X\xff\xff\xff\xff.", "truncated")
    refused("\x80\x02\x8b\xff\xff\xff\x7f.", "truncated")
    refused("\x80\x02\x8b\xff\xff\xff\xff.", "negative length")
    refused("\x80\x04\x95" .. string.pack("<I8", 1 << 40) .. ".", "FRAME longer")
  end)

  it("opcodes a weights file never needs are errors", function()
    refused("\x80\x02\xff.", "unknown opcode 0xff")
    refused("\x80\x02\x82\x01.", "extension registry")
    refused("\x80\x05\x97.", "out-of-band")
    refused("\x80\x02\x80\x09.", "protocol above 5")
    refused("\x80\x02K\x01\x85Q.", "persistent id")
    refused("\x80\x02.", "stack underflow")
    refused("\x80\x02K\x01", "truncated")
    refused("\x80\x02cos\nsys", "truncated")
  end)

  it("a truncated stream fails cleanly at every byte", function()
    local src = DIR .. "/full.pkl"
    H.py([[
import pickle, sys, numpy as np, collections
d = collections.OrderedDict([("w", np.arange(6, dtype='<f4').reshape(2, 3)),
    ("meta", {"epoch": 3, "lr": 0.5, "name": u"caf\u00e9", "ids": [1, 2, (3, 4)],
              "flags": {True, False}, "raw": b"\x00\xff", "big": 2**70})])
with open(sys.argv[1], "wb") as f:
    pickle.dump(d, f, protocol=2)
]], src)
    local bytes = H.read(src)
    local m = graft.open(src)
    assert.are.same({ "w" }, graft.names(m))
    assert.are.equal("caf\u{e9}", graft.meta(m).tree.meta.name)
    local p = DIR .. "/cut.pkl"
    for n = 1, #bytes - 1 do
      H.write(p, bytes:sub(1, n))
      local ok, err = pcall(graft.open, p)
      assert.is_false(ok, "a prefix of " .. n .. " bytes opened")
      assert.truthy(tostring(err):find(p, 1, true), err)
    end
  end)
end)

describe("hostile torch files", function()
  before_each(fresh)

  -- A zip torch archive from a data.pkl (hex) and storage records.
  local MAKE = [[
import sys, zipfile, json
out, pkl, records = sys.argv[1], bytes.fromhex(sys.argv[2]), json.loads(sys.argv[3])
with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as z:
    z.writestr("arch/data.pkl", pkl)
    for k, v in records.items():
        z.writestr(k, bytes.fromhex(v))
    z.writestr("arch/version", "3\n")
]]

  local function archive(pkl, records)
    local p = DIR .. "/bad.pt"
    local parts = {}
    for k, v in pairs(records or {}) do parts[#parts + 1] = string.format("%q: %q", k, H.hex(v)) end
    H.py(MAKE, p, H.hex(pkl), "{" .. table.concat(parts, ", ") .. "}")
    return p
  end

  -- _rebuild_tensor_v2(storage(key, numel), offset, size, stride, False, OrderedDict())
  local function tensor_pkl(numel, offset, size, stride, class)
    local function tup(t)
      local s = "("
      for _, v in ipairs(t) do s = s .. "J" .. string.pack("<i4", v) end
      return s .. "t"
    end
    return "\x80\x02}" .. binunicode("w") .. global("torch._utils", "_rebuild_tensor_v2")
      .. "((" .. binunicode("storage") .. global("torch", class or "FloatStorage")
      .. binunicode("0") .. binunicode("cpu") .. "J" .. string.pack("<i4", numel) .. "tQ"
      .. "J" .. string.pack("<i4", offset) .. tup(size) .. tup(stride) .. "\x89"
      .. global("collections", "OrderedDict") .. ")RtRs."
  end

  local function refused_file(p, ...)
    local err = H.raises(function() graft.open(p) end)
    assert.truthy(err:find(p, 1, true), "error does not name the file: " .. err)
    for _, s in ipairs({ ... }) do
      assert.truthy(err:find(s, 1, true), "error " .. err .. " does not say " .. s)
    end
    return err
  end

  it("a well-formed archive of the same shape opens (control)", function()
    local p = archive(tensor_pkl(4, 0, { 2, 2 }, { 2, 1 }), { ["arch/data/0"] = string.rep("\0", 16) })
    local m = graft.open(p)
    assert.are.same({ 2, 2 }, m.w.shape)
  end)

  it("a storage smaller than its persistent id claims is refused", function()
    local p = archive(tensor_pkl(10, 0, { 2, 2 }, { 2, 1 }), { ["arch/data/0"] = string.rep("\0", 8) })
    refused_file(p, "storage \"0\"", "10 elements of 4 bytes", "holds 8 bytes")
  end)

  it("a tensor reaching past its storage is refused, with its name", function()
    local p = archive(tensor_pkl(4, 0, { 100 }, { 1 }), { ["arch/data/0"] = string.rep("\0", 16) })
    refused_file(p, "tensor \"w\"", "outside its 16-byte storage")
    p = archive(tensor_pkl(4, 3, { 2 }, { 1 }), { ["arch/data/0"] = string.rep("\0", 16) })
    refused_file(p, "tensor \"w\"", "outside")
    p = archive(tensor_pkl(4, 0, { 2, 2 }, { 1, 3 }), { ["arch/data/0"] = string.rep("\0", 16) })
    refused_file(p, "tensor \"w\"", "outside")
    p = archive(tensor_pkl(4, 0, { 2 }, { 0x7fffffff }), { ["arch/data/0"] = string.rep("\0", 16) })
    refused_file(p, "tensor \"w\"")
  end)

  it("missing records, unknown storage types and foreign persistent ids are errors", function()
    refused_file(archive(tensor_pkl(4, 0, { 4 }, { 1 }), {}), "record arch/data/0 is missing")
    refused_file(archive(tensor_pkl(4, 0, { 4 }, { 1 }, "EvilStorage"),
      { ["arch/data/0"] = string.rep("\0", 16) }), "unknown storage type torch.EvilStorage")
    refused_file(archive("\x80\x02(" .. binunicode("module") .. "K\x01tQ.", {}),
      "unsupported persistent id")
    refused_file(archive("\x80\x02" .. global("os", "system") .. binunicode(CMD()) .. "\x85R.",
      { ["other/x"] = "x" }), "outside the archive folder")
    no_marker()
  end)

  it("a torch archive holding os.system opens as an inert placeholder", function()
    local m = graft.open(archive("\x80\x02" .. global("os", "system") .. binunicode(CMD()) .. "\x85R.", {}))
    no_marker()
    assert.are.same({ global = "os.system", args = { CMD() } }, graft.meta(m).tree)
  end)

  it("a legacy file truncated at every byte fails cleanly", function()
    local src = DIR .. "/legacy.pt"
    H.py([[
import sys, torch
torch.save({"w": torch.arange(6.).reshape(2, 3), "b": torch.ones(2, dtype=torch.int64)},
           sys.argv[1], _use_new_zipfile_serialization=False)
]], src)
    local bytes = H.read(src)
    assert.are.same({ "w", "b" }, graft.names(graft.open(src)))
    local p = DIR .. "/cut.pt"
    for n = 1, #bytes - 1 do
      H.write(p, bytes:sub(1, n))
      local ok, err = pcall(graft.open, p)
      assert.is_false(ok, "a prefix of " .. n .. " bytes opened")
      assert.truthy(tostring(err):find(p, 1, true), err)
    end
  end)
end)
