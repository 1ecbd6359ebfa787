-- The `graft` command's --json output against the schemas of docs/cli.md,
-- its exit codes (0 ok, 1 different / failed check, 2 usage or bad input),
-- option errors, `diff`'s NaN and dtype rules, provenance in every format
-- that keeps metadata (read back by safetensors' safe_open, gguf-py and
-- h5py in the oracle environment), and SHA-256 against FIPS 180-4 vectors
-- and Python's hashlib.
local graft = require "graft"
local json = require "graft.json"
local core = require "graft.core"
local H = require "helper"

local ROOT = H.ROOT
local ENV = H.GRAFT_ENV
local GRAFT = H.GRAFT_CMD

local run = H.graft

-- A tiny schema checker. A schema is a type name ("string", "number",
-- "integer", "boolean"), "T|null", {array = S}, {map = S} (any string keys),
-- or a table of field -> schema (every field required, no others allowed;
-- a field whose schema ends in "?" may be absent).
local function check(schema, v, where)
  where = where or "$"
  if type(schema) == "string" then
    local opt = schema:match("^(.-)%?$")
    if opt then schema = opt end
    for alt in schema:gmatch("[^|]+") do
      if alt == "null" and v == nil then return end
      if alt == "string" and type(v) == "string" then return end
      if alt == "number" and type(v) == "number" then return end
      if alt == "integer" and math.type(v) == "integer" then return end
      if alt == "boolean" and type(v) == "boolean" then return end
      if alt == "table" and type(v) == "table" then return end
    end
    error(where .. ": expected " .. schema .. ", got " .. tostring(v), 0)
  end
  if schema.array then
    assert(type(v) == "table", where .. ": expected an array")
    for i, x in ipairs(v) do check(schema.array, x, where .. "[" .. i .. "]") end
    return
  end
  if schema.map then
    assert(type(v) == "table", where .. ": expected an object")
    for k, x in pairs(v) do check(schema.map, x, where .. "." .. k) end
    return
  end
  assert(type(v) == "table", where .. ": expected an object, got " .. tostring(v))
  for k, s in pairs(schema) do
    if not (type(s) == "string" and s:find("%?$")) or v[k] ~= nil then
      check(s, v[k], where .. "." .. k)
    end
  end
  for k in pairs(v) do assert(schema[k], where .. ": unexpected key " .. k) end
end

local SCHEMA = {
  ls = { file = "string", format = "string", count = "integer", bytes = "integer",
         tensors = { array = { name = "string", dtype = "string", shape = { array = "integer" },
                               bytes = "integer" } },
         metadata = "table|null" },
  show = { file = "string", name = "string", dtype = "string", shape = { array = "integer" },
           bytes = "integer", stats = "table|null", values = "table|null" },
  stats = { min = "number", max = "number", mean = "number", std = "number", nan = "integer" },
  convert = { input = "string", output = "string", format = "string", count = "integer",
              provenance = "table|null" },
  diff = { a = "string", b = "string", atol = "number", same = "boolean", compared = "integer",
           differences = { array = { name = "string", kind = "string", a = "table|string?",
                                     b = "table|string?", max_abs_diff = "number|string?",
                                     nan_mismatch = "integer?" } } },
  run = { recipe = "string", recipe_sha256 = "string", ok = "boolean" },
  verify = { file = "string", ok = "boolean", verified = "integer", error = "string|null" },
  format = { name = "string", family = "string", description = "string", read = "boolean",
             write = "boolean", extensions = { array = "string" },
             open_options = { map = "string" }, save_options = { map = "string" } },
  provenance = { ["graft.version"] = "string", ["graft.sources"] = "string",
                 ["graft.recipe_sha256"] = "string?" },
}

local function jrun(...)
  local out, err, code = run(...)
  local ok, v = pcall(json.decode, out)
  assert(ok, "not JSON: " .. out .. err)
  return v, code, err
end

local function file_sha(path)
  return H.py("import hashlib,sys; print(hashlib.sha256(open(sys.argv[1],'rb').read()).hexdigest())",
    path):match("%x+")
end

-- npz files for diff: a/b differ only as the test names say.
local MAKE = [==[
import sys, numpy as np
d = sys.argv[1]
nan = float("nan")
np.savez(d + "/a.npz", w=np.array([1, nan, 3], "f4"), v=np.array([1, 2], "f4"),
         s=np.zeros((2, 3), "f4"), gone=np.zeros(1, "f4"))
np.savez(d + "/same.npz", w=np.array([1, nan, 3], "f4"), v=np.array([1, 2], "f4"),
         s=np.zeros((2, 3), "f4"), gone=np.zeros(1, "f4"))
np.savez(d + "/b.npz", w=np.array([1, 2, 3.5], "f4"), v=np.array([1, 2], "f2"),
         s=np.zeros((3, 2), "f4"), new=np.zeros(1, "f4"))
]==]

local function diff_fixtures()
  local dir = H.tmpdir()
  H.py(MAKE, dir)
  return dir
end

describe("graft --json", function()
  after_each(H.cleanup)

  it("ls, show, verify and formats print their documented shapes", function()
    local dir = diff_fixtures()
    local v, code = jrun("ls", dir .. "/a.npz", "--json")
    assert.are.equal(0, code)
    check(SCHEMA.ls, v)
    assert.are.equal(4, v.count)
    assert.are.equal(nil, v.metadata)
    assert.are.same({ "w", "v", "s", "gone" },
      { v.tensors[1].name, v.tensors[2].name, v.tensors[3].name, v.tensors[4].name })

    v, code = jrun("show", dir .. "/a.npz", "w", "--json")
    assert.are.equal(0, code)
    check(SCHEMA.show, v)
    check(SCHEMA.stats, v.stats)
    assert.are.same({ 1.0, "nan", 3.0 }, v.values)
    assert.are.equal(1, v.stats.nan)

    v, code = jrun("verify", dir .. "/a.npz", "--json")
    assert.are.equal(0, code)
    check(SCHEMA.verify, v)
    assert.are.same({ file = dir .. "/a.npz", ok = true, verified = 4 }, v)

    v, code = jrun("formats", "--json")
    assert.are.equal(0, code)
    assert.are.equal(#graft.formats(), #v)
    for _, f in ipairs(v) do check(SCHEMA.format, f) end
  end)

  it("diff: NaN equals NaN, dtype, shape, missing and extra names, max abs diff", function()
    local dir = diff_fixtures()
    local v, code = jrun("diff", dir .. "/a.npz", dir .. "/same.npz", "--json")
    assert.are.equal(0, code)
    check(SCHEMA.diff, v)
    assert.are.same({ a = dir .. "/a.npz", b = dir .. "/same.npz", atol = 0, same = true,
                      compared = 4, differences = {} }, v)

    v, code = jrun("diff", dir .. "/a.npz", dir .. "/b.npz", "--json")
    assert.are.equal(1, code)
    check(SCHEMA.diff, v)
    assert.is_false(v.same)
    assert.are.same({
      { name = "w", kind = "values", max_abs_diff = 0.5, nan_mismatch = 1 },
      { name = "v", kind = "dtype", a = "float32", b = "float16", max_abs_diff = 0,
        nan_mismatch = 0 },
      { name = "s", kind = "shape", a = { 2, 3 }, b = { 3, 2 } },
      { name = "gone", kind = "only_a" },
      { name = "new", kind = "only_b" },
    }, v.differences)

    local out, err
    out, err, code = run("diff", dir .. "/a.npz", dir .. "/b.npz")
    assert.are.equal(1, code, err)
    assert.are.equal(table.concat({
      "values: w max abs diff 0.5, NaN on one side only at 1",
      "dtype: v float32 vs float16 max abs diff 0",
      "shape: s {2,3} vs {3,2}",
      "only in A: gone",
      "only in B: new",
      "5 differences", "" }, "\n"), out)
  end)

  it("diff --atol tolerates small differences but never a NaN on one side", function()
    local dir = H.tmpdir()
    H.py([==[
import sys, numpy as np
np.savez(sys.argv[1] + "/x.npz", w=np.array([1, 2], "f8"))
np.savez(sys.argv[1] + "/y.npz", w=np.array([1, 2.25], "f8"))
np.savez(sys.argv[1] + "/z.npz", w=np.array([1, float("nan")], "f8"))
]==], dir)
    local v, code = jrun("diff", dir .. "/x.npz", dir .. "/y.npz", "--atol", "0.5", "--json")
    assert.are.equal(0, code)
    assert.is_true(v.same)
    v, code = jrun("diff", dir .. "/x.npz", dir .. "/y.npz", "--atol=0.1", "--json")
    assert.are.equal(1, code)
    assert.are.equal(0.25, v.differences[1].max_abs_diff)
    v, code = jrun("diff", dir .. "/x.npz", dir .. "/z.npz", "--atol", "100", "--json")
    assert.are.equal(1, code)
    assert.are.equal(1, v.differences[1].nan_mismatch)
  end)

  it("convert records provenance; run records the recipe's sha256", function()
    local dir = diff_fixtures()
    local src = dir .. "/a.npz"
    local v, code = jrun("convert", src, dir .. "/o.safetensors", "--json")
    assert.are.equal(0, code)
    check(SCHEMA.convert, v)
    check(SCHEMA.provenance, v.provenance)
    assert.are.equal(graft.version, v.provenance["graft.version"])
    assert.are.same({ { name = "a.npz", sha256 = file_sha(src) } },
      json.decode(v.provenance["graft.sources"]))
    local ls = jrun("ls", dir .. "/o.safetensors", "--json")
    assert.are.same(v.provenance, ls.metadata)

    local recipe = dir .. "/r.lua"
    H.write(recipe, 'local graft = require "graft"\n'
      .. 'graft.save(arg[2], graft.open(arg[1]))\n'
      .. 'graft.save(arg[3], graft.open(arg[1]), { provenance = false })\n')
    local out, err
    out, err, code = run("run", "--json", recipe, src, dir .. "/r.safetensors", dir .. "/n.safetensors")
    assert.are.equal(0, code, err)
    v = json.decode(out)
    check(SCHEMA.run, v)
    assert.are.equal(file_sha(recipe), v.recipe_sha256)
    ls = jrun("ls", dir .. "/r.safetensors", "--json")
    check(SCHEMA.provenance, ls.metadata)
    assert.are.equal(v.recipe_sha256, ls.metadata["graft.recipe_sha256"])
    assert.are.same({ { name = "a.npz", sha256 = file_sha(src) } },
      json.decode(ls.metadata["graft.sources"]))
    assert.are.equal(nil, jrun("ls", dir .. "/n.safetensors", "--json").metadata)

    -- --map RECIPE: its sha256 too; --no-provenance: nothing
    local map = dir .. "/m.lua"
    H.write(map, 'return { { "^(.*)$", "p.%1" } }\n')
    v = jrun("convert", src, dir .. "/m.safetensors", "--map", map, "--json")
    assert.are.equal(file_sha(map), v.provenance["graft.recipe_sha256"])
    v, code = jrun("convert", src, dir .. "/q.safetensors", "--no-provenance", "--json")
    assert.are.equal(0, code)
    assert.are.equal(nil, v.provenance)
    assert.are.equal(nil, jrun("ls", dir .. "/q.safetensors", "--json").metadata)
  end)
end)

describe("graft exit codes and option errors", function()
  after_each(H.cleanup)

  local function usage_error(err, code, ...)
    assert.are.equal(2, code, err)
    assert.truthy(err:find("^graft: "), err)
    assert.falsy(err:find("traceback", 1, true), err)
    for _, s in ipairs({ ... }) do assert.truthy(err:find(s, 1, true), err) end
  end

  it("an unknown option is named with the closest one; a bad value says what it needs", function()
    local dir = diff_fixtures()
    local out, err, code = run("convert", dir .. "/a.npz", dir .. "/y.npz", "--dtyp", "float16")
    usage_error(err, code, "unknown option --dtyp", "did you mean --dtype?")
    assert.are.equal("", out)
    assert.are.same({ "a.npz", "b.npz", "same.npz" }, H.ls(dir))
    _, err, code = run("diff", dir .. "/a.npz", dir .. "/b.npz", "--atol", "abc")
    usage_error(err, code, "--atol needs a number", '"abc"')
    _, err, code = run("diff", dir .. "/a.npz", dir .. "/b.npz", "--atol", "-1")
    usage_error(err, code, "--atol needs a number >= 0")
    -- an option's value equal to a positional is still the option's
    local v
    v, code = jrun("diff", dir .. "/a.npz", dir .. "/same.npz", "--atol", "0", "--json")
    assert.are.equal(0, code)
    v, code = jrun("convert", dir .. "/a.npz", "--dtype", "float16", dir .. "/h.npz", "--json",
      "--no-provenance")
    assert.are.equal(0, code)
    assert.are.equal("float16", graft.open(dir .. "/h.npz").w.dtype)
    assert.are.equal(dir .. "/h.npz", v.output)
    _, err, code = run("ls", dir .. "/a.npz", "--jsn")
    usage_error(err, code, "unknown option --jsn", "did you mean --json?")
    _, err, code = run("ls", dir .. "/a.npz", "--json=yes")
    usage_error(err, code, "--json takes no value")
    _, err, code = run("diff", dir .. "/a.npz", dir .. "/b.npz", "--atol", "1", "--atol", "2")
    usage_error(err, code, "--atol given twice")
    _, err, code = run("ls", dir .. "/a.npz", dir .. "/b.npz")
    usage_error(err, code, "unexpected argument")
    _, err, code = run("show", dir .. "/a.npz")
    usage_error(err, code, "show needs FILE NAME", "usage: graft show")
    _, err, code = run("verify", dir .. "/a.npz", "-x")
    usage_error(err, code, "unknown option -x")
  end)

  it("--help per command prints its usage and exits 0", function()
    for _, c in ipairs({ "ls", "show", "convert", "diff", "run", "verify", "formats" }) do
      local out, err, code = run(c, "--help")
      assert.are.equal(0, code, err)
      assert.truthy(out:find("^usage: graft " .. c), out)
    end
  end)

  it("bad input exits 2: unreadable file, bad recipe; a failed check exits 1", function()
    local dir = diff_fixtures()
    local _, err, code = run("ls", dir .. "/missing.npz")
    usage_error(err, code, dir .. "/missing.npz")
    H.write(dir .. "/bad.lua", "return {{{ this is not lua")
    _, err, code = run("run", dir .. "/bad.lua")
    usage_error(err, code, "bad.lua")
    _, err, code = run("convert", dir .. "/a.npz", dir .. "/o.npz", "--map", dir .. "/bad.lua")
    usage_error(err, code, "bad.lua")
    H.write(dir .. "/raise.lua", 'error("recipe says no")')
    _, err, code = run("run", dir .. "/raise.lua")
    usage_error(err, code, "recipe says no")
    -- a flipped byte inside a stored npz member: its CRC-32 fails
    local bytes = H.read(dir .. "/a.npz")
    local at = bytes:find("\x93NUMPY", 1, true) + 130 -- inside w's 12 data bytes
    H.write(dir .. "/bad.npz", bytes:sub(1, at - 1)
      .. string.char((bytes:byte(at) + 1) % 256) .. bytes:sub(at + 1))
    local v
    v, code = jrun("verify", dir .. "/bad.npz", "--json")
    assert.are.equal(1, code)
    check(SCHEMA.verify, v)
    assert.is_false(v.ok)
    assert.truthy(v.error:find("CRC", 1, true) or v.error:find("crc", 1, true), v.error)
  end)
end)

describe("provenance in each format, read by its framework", function()
  after_each(H.cleanup)

  it("safetensors (safe_open), GGUF (gguf-py), HDF5 and Keras (h5py) carry it", function()
    local dir = H.tmpdir()
    local src = dir .. "/src.safetensors"
    graft.save(src, { ["dense/kernel"] = graft.tensor({ { 1, 2 }, { 3, 4 } }, "float32"),
                      ["dense/bias"] = graft.tensor({ 0.5, -1 }, "float32") })
    -- API default: no metadata unless asked (byte-identity with framework writers)
    assert.are.equal(nil, graft.meta(graft.open(src)).__metadata__)
    local outs = { "o.safetensors", "o.gguf", "o.hdf5", "o.h5" }
    local want
    for _, o in ipairs(outs) do
      local v, code, err = jrun("convert", src, dir .. "/" .. o, "--json")
      assert.are.equal(0, code, err)
      want = v.provenance
      local ls = jrun("ls", dir .. "/" .. o, "--json")
      for k, x in pairs(want) do assert.are.equal(x, ls.metadata[k], o .. " " .. k) end
    end
    local got = json.decode(H.oracle([==[
import sys, json, h5py
from safetensors import safe_open
from gguf import GGUFReader
d = sys.argv[1]
out = {}
with safe_open(d + "/o.safetensors", "np") as f:
    out["safetensors"] = f.metadata()
r = GGUFReader(d + "/o.gguf")
out["gguf"] = {k: str(bytes(fl.parts[fl.data[0]]), "utf-8") for k, fl in r.fields.items()
               if k.startswith("graft.")}
for ext in ("hdf5", "h5"):
    with h5py.File(d + "/o." + ext) as f:
        out[ext] = {k: (v.decode() if isinstance(v, bytes) else str(v))
                    for k, v in f.attrs.items() if k.startswith("graft.")}
print(json.dumps(out))
]==], dir))
    for _, fmt in ipairs({ "safetensors", "gguf", "hdf5", "h5" }) do
      assert.are.same(want, got[fmt], fmt)
    end
    -- the converted file still loads as what it was
    assert.are.equal("keras", graft.meta(graft.open(dir .. "/o.h5")).format)
  end)

  it("a torch archive carries it as a member torch.load ignores (weights_only, 1.13 and 2.x)", function()
    local dir = H.tmpdir()
    local src = dir .. "/src.safetensors"
    graft.save(src, { w = graft.tensor({ { 1, 2 }, { 3, 4 } }, "float32"),
                      b = graft.tensor({ 0.5, -1 }, "float32") })
    local v, code, err = jrun("convert", src, dir .. "/o.pt", "--json")
    assert.are.equal(0, code, err)
    check(SCHEMA.provenance, v.provenance)
    local LOAD = [==[
import sys, json, zipfile, torch
p = sys.argv[1]
sd = torch.load(p, weights_only=True)
z = zipfile.ZipFile(p)
member = [n for n in z.namelist() if n.endswith("/graft_provenance.json")]
print(json.dumps({"torch": torch.__version__, "names": sorted(sd.keys()),
                  "w": sd["w"].tolist(), "members": member,
                  "provenance": json.loads(z.read(member[0]))}))
]==]
    for _, out in ipairs({ H.py(LOAD, dir .. "/o.pt"), H.oracle(LOAD, dir .. "/o.pt") }) do
      local r = json.decode(out)
      assert.are.same({ "b", "w" }, r.names)
      assert.are.same({ { 1, 2 }, { 3, 4 } }, r.w)
      assert.are.same({ "o/graft_provenance.json" }, r.members)
      assert.are.same(v.provenance, r.provenance, r.torch)
    end
    -- graft still reads its own output; the API writes no member unless asked
    assert.are.same({ "b", "w" }, graft.names(graft.open(dir .. "/o.pt")))
    graft.save(dir .. "/plain.pt", graft.open(src))
    for _, n in ipairs(core.zip_names(dir .. "/plain.pt")) do
      assert.falsy(n:find("graft_provenance", 1, true), n)
    end
  end)

  it("a user's own metadata wins over a provenance key", function()
    local dir = H.tmpdir()
    local p = graft.provenance.make({})
    graft.save(dir .. "/u.safetensors", { x = graft.zeros({ 2 }, "float32") },
      { metadata = { ["graft.version"] = "mine", note = "kept" }, provenance = p })
    local md = graft.meta(graft.open(dir .. "/u.safetensors")).__metadata__
    assert.are.same({ ["graft.version"] = "mine", note = "kept", ["graft.sources"] = "[]" }, md)
  end)
end)

describe("sha256", function()
  after_each(H.cleanup)

  it("matches the FIPS 180-4 examples and hashlib on files across chunk boundaries", function()
    assert.are.equal("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", core.sha256(""))
    assert.are.equal("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad", core.sha256("abc"))
    assert.are.equal("248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1",
      core.sha256("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"))
    assert.are.equal("cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0",
      core.sha256(string.rep("a", 1000000)))
    -- every padding case: lengths around the 55/56/64-byte block edges
    local dir = H.tmpdir()
    for _, n in ipairs({ 0, 1, 55, 56, 57, 63, 64, 65, 119, 120, 3 * 2^20 + 7 }) do
      local p = dir .. "/f" .. n
      local s = {}
      for i = 1, n % 4096 do s[i] = string.char((i * 7 + n) % 256) end
      local block = table.concat(s)
      H.write(p, n < 4096 and block or string.rep(block, n // #block) .. block:sub(1, n % #block))
      local seen = 0
      assert.are.equal(file_sha(p), core.sha256_file(p, function(done) seen = done end), n)
      assert.are.equal(file_sha(p), core.sha256(H.read(p)), n)
      if n > 0 then assert.are.equal(n, seen) end
    end
  end)
end)
