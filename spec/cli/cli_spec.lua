-- The `graft` command, run as a user runs it: lua5.4 bin/graft with
-- LUA_PATH/LUA_CPATH pointing at this checkout's lua/ and build/ (what
-- `luarocks make` installs). Results are checked with graft and, for npz,
-- with numpy; safetensors written by the CLI are validated by st_ref.py.
local graft = require "graft"
local json = require "graft.json"
local H = require "helper"

local ROOT = H.ROOT
local ENV = H.GRAFT_ENV
local GRAFT = H.GRAFT_CMD
local REF = "spec/fixtures/st_ref.py"

local run = H.graft

local function lines(s)
  local t = {}
  for l in s:gmatch("[^\n]+") do t[#t + 1] = l end
  return t
end

local function human(n)
  local units = { "B", "KiB", "MiB", "GiB" }
  local i = 1
  while n >= 1024 and i < #units do n = n / 1024; i = i + 1 end
  return i == 1 and string.format("%d B", n) or string.format("%.1f %s", n, units[i])
end

-- `graft ls` text: one row per tensor, then the totals line.
local function parse_ls(out)
  local rows, total = {}, nil
  local in_meta = false
  for _, l in ipairs(lines(out)) do
    local n, count, size, fmt = l:match("^((%d+) tensors?, (.-) %((%w+)%))$")
    -- after the totals line, the file's metadata: "metadata:", then "  key = value"
    if total and l == "metadata:" then in_meta = true
    elseif in_meta then assert(l:find("^  %S+ = "), "unexpected metadata line: " .. l)
    elseif n then
      total = { count = tonumber(count), size = size, format = fmt }
    else
      local name, dtype, shape, bytes = l:match("^(%S+)%s+(%S+)%s+({[%d,]*})%s+(%d.-)$")
      assert(name, "unexpected ls line: " .. l)
      rows[#rows + 1] = { name = name, dtype = dtype, shape = shape, bytes = bytes }
    end
  end
  assert(total, "no totals line in: " .. out)
  return rows, total
end

-- What ls must say about m (a table opened by graft, names in `order`).
local function check_ls(out, m, order, format)
  local rows, total = parse_ls(out)
  assert.are.equal(#order, #rows)
  local sum = 0
  for i, name in ipairs(order) do
    local t = m[name]
    assert.are.equal(name, rows[i].name)
    assert.are.equal(t.dtype, rows[i].dtype)
    assert.are.equal("{" .. table.concat(t.shape, ",") .. "}", rows[i].shape)
    assert.are.equal(human(t.nbytes), rows[i].bytes)
    sum = sum + t.nbytes
  end
  assert.are.same({ count = #order, size = human(sum), format = format }, total)
end

local function assert_clean_error(err, code, ...)
  assert.are_not.equal(0, code)
  assert.truthy(err:find("^graft: "), err)
  assert.falsy(err:find("traceback", 1, true), err)
  assert.falsy(err:find("%.lua:%d+:"), err)
  for _, s in ipairs({ ... }) do assert.truthy(err:find(s, 1, true), err) end
end

-- numpy's view of an npz: names in member order, dtype, shape, values.
local NPZ_DUMP = [==[
import sys, json, numpy as np
z = np.load(sys.argv[1])
out = []
for k in z.files:
    a = z[k]
    out.append({"name": k, "dtype": str(a.dtype), "shape": list(a.shape),
                "values": a.reshape(-1).tolist()})
print(json.dumps(out))
]==]

local function npz_dump(path)
  return json.decode(H.py(NPZ_DUMP, path))
end

local function flat(t)
  local out = {}
  local function walk(v)
    if type(v) == "table" then
      for _, x in ipairs(v) do walk(x) end
    else
      out[#out + 1] = v
    end
  end
  walk(t:totable())
  return out
end

-- A small model with float, integer and bool tensors.
local function sample_tensors()
  return {
    ["layer.0.weight"] = graft.tensor({ { 1.5, -2.25, 3 }, { 4, 5.5, -6 } }, "float32"),
    ["layer.0.bias"] = graft.tensor({ 0.1, -0.5 }, "float64"),
    ["layer.1.weight"] = graft.tensor({ { 1, 2 }, { 3, 4 }, { 65504, -0.5 } }, "float16"),
    ["steps"] = graft.tensor({ 7, 8, 9 }, "int64"),
    ["mask"] = graft.tensor({ true, false, true }, "bool"),
  }
end

local ORDER = { "layer.0.weight", "layer.0.bias", "layer.1.weight", "steps", "mask" }

local function sample(dir, ext)
  local path = dir .. "/model." .. ext
  graft.save(path, sample_tensors(), { order = ORDER })
  return path
end

describe("graft ls", function()
  after_each(H.cleanup)

  it("lists a safetensors file in file order with dtype, shape, bytes and totals", function()
    local path = sample(H.tmpdir(), "safetensors")
    local out, err, code = run("ls", path)
    assert.are.equal(0, code)
    assert.are.equal("", err)
    -- file order as the independent reader sees it (offset order)
    local d = json.decode(H.py(H.read(REF), "dump", path))
    local order = {}
    for i, t in ipairs(d.tensors) do order[i] = t.name end
    check_ls(out, graft.open(path), order, "safetensors")
  end)

  it("lists an npz in member order and an npy by its file name", function()
    local dir = H.tmpdir()
    local path = sample(dir, "npz")
    local out, _, code = run("ls", path)
    assert.are.equal(0, code)
    check_ls(out, graft.open(path), ORDER, "npz")
    graft.save(dir .. "/w.npy", { w = graft.zeros({ 3, 300 }, "float64") })
    out, _, code = run("ls", dir .. "/w.npy")
    assert.are.equal(0, code)
    check_ls(out, graft.open(dir .. "/w.npy"), { "w" }, "npy")
    assert.truthy(out:find("\n1 tensor, 7.0 KiB %(npy%)\n$"), out)
  end)

  it("lists real framework-written files", function()
    local st = H.real("safetensors/hf-safetensors-pr84-samples/overall.safetensors")
    if not st then return end
    local out, _, code = run("ls", st)
    assert.are.equal(0, code)
    local d = json.decode(H.py(H.read(REF), "dump", st))
    local order = {}
    for i, t in ipairs(d.tensors) do order[i] = t.name end
    assert.are.equal(9, #order)
    check_ls(out, graft.open(st), order, "safetensors")

    local npz = H.real("npz/hls4ml-graph000001/graph000001.npz")
    out, _, code = run("ls", npz)
    assert.are.equal(0, code)
    check_ls(out, graft.open(npz), { "X", "Ri_rows", "Ri_cols", "Ro_rows", "Ro_cols", "y" }, "npz")

    local npy = H.real("npy/tch-rs-linear/ws.npy")
    out, _, code = run("ls", npy)
    assert.are.equal(0, code)
    check_ls(out, graft.open(npy), { "ws" }, "npy")
  end)

  it("--json gives stable keys that parse back", function()
    local path = sample(H.tmpdir(), "npz")
    local out, err, code = run("ls", path, "--json")
    assert.are.equal(0, code)
    assert.are.equal("", err)
    assert.are.equal("\n", out:sub(-1))
    local j = json.decode(out)
    local keys = {}
    for k in pairs(j) do keys[#keys + 1] = k end
    table.sort(keys)
    assert.are.same({ "bytes", "count", "file", "format", "tensors" }, keys)
    assert.are.equal(path, j.file)
    assert.are.equal("npz", j.format)
    assert.are.equal(#ORDER, j.count)
    local m, total = graft.open(path), 0
    for i, name in ipairs(ORDER) do
      local e, t = j.tensors[i], m[name]
      local ek = {}
      for k in pairs(e) do ek[#ek + 1] = k end
      table.sort(ek)
      assert.are.same({ "bytes", "dtype", "name", "shape" }, ek)
      assert.are.same({ name = name, dtype = t.dtype, shape = t.shape, bytes = t.nbytes }, e)
      total = total + t.nbytes
    end
    assert.are.equal(total, j.bytes)
    -- keys sorted, compact: the same text for the same file every time
    assert.truthy(out:find('^{"bytes":%d+,"count":5,"file":'), out)
    assert.are.equal(out, (run("ls", path, "--json")))
  end)

  it("--json of a real file and of an empty file", function()
    local npz = H.real("npz/candle-tests/test.npz")
    if not npz then return end
    local j = json.decode((run("ls", npz, "--json")))
    assert.are.equal(2, j.count)
    assert.are.same({ name = "x", dtype = "int64", shape = { 10 }, bytes = 80 }, j.tensors[1])
    assert.are.same({ name = "x_plus_one", dtype = "int64", shape = { 10 }, bytes = 80 }, j.tensors[2])
    local empty = H.real("safetensors/iree-safetensors-testdata/empty.safetensors")
    local out = run("ls", empty, "--json")
    assert.truthy(out:find('"tensors":[]', 1, true), out)
    assert.are.equal(0, json.decode(out).count)
  end)
end)

describe("graft convert", function()
  after_each(H.cleanup)

  it("safetensors -> npz keeps every value (checked with numpy)", function()
    local dir = H.tmpdir()
    local src = sample(dir, "safetensors")
    local out, err, code = run("convert", src, dir .. "/out.npz")
    assert.are.equal(0, code)
    assert.are.equal("", out)
    assert.are.equal("", err) -- no progress bar: stderr is not a terminal
    local a, b = graft.open(src), graft.open(dir .. "/out.npz")
    assert.are.same(graft.names(a), graft.names(b))
    for _, n in ipairs(graft.names(a)) do
      assert.are.equal(a[n].dtype, b[n].dtype)
      assert.is_true(a[n]:equal(b[n]), n)
    end
    local np = npz_dump(dir .. "/out.npz")
    assert.are.equal(#ORDER, #np)
    local np_dtype = { float32 = "float32", float64 = "float64", float16 = "float16",
                       int64 = "int64", bool = "bool" }
    for i, e in ipairs(np) do
      local t = a[e.name]
      assert.are.equal(graft.names(a)[i], e.name)
      assert.are.equal(np_dtype[t.dtype], e.dtype)
      assert.are.same(t.shape, e.shape)
      assert.are.same(flat(t), e.values)
    end
  end)

  it("npz (written by numpy) -> safetensors keeps every value", function()
    local dir = H.tmpdir()
    H.py([[
import sys, numpy as np
rng = np.random.default_rng(5)
np.savez(sys.argv[1], emb=rng.standard_normal((7, 5)).astype('<f4'),
         ids=np.arange(12, dtype='<i8').reshape(3, 4),
         fort=np.asfortranarray(rng.standard_normal((3, 2))),
         flag=np.array([True, False]))
]], dir .. "/in.npz")
    local _, err, code = run("convert", dir .. "/in.npz", dir .. "/out.safetensors")
    assert.are.equal(0, code, err)
    assert.are.equal("ok\n", H.py(H.read(REF), "check", dir .. "/out.safetensors"))
    local m = graft.open(dir .. "/out.safetensors")
    local np = npz_dump(dir .. "/in.npz")
    assert.are.equal(4, #graft.names(m))
    for _, e in ipairs(np) do
      local t = m[e.name]
      assert.are.equal(e.dtype, t.dtype)
      assert.are.same(e.shape, t.shape)
      assert.are.same(e.values, flat(t))
    end
  end)

  it("--dtype float16 casts float tensors only", function()
    local dir = H.tmpdir()
    local src = sample(dir, "safetensors")
    local _, err, code = run("convert", src, dir .. "/half.npz", "--dtype", "float16")
    assert.are.equal(0, code, err)
    local a, b = graft.open(src), graft.open(dir .. "/half.npz")
    local want = { ["layer.0.weight"] = "float16", ["layer.0.bias"] = "float16",
                   ["layer.1.weight"] = "float16", steps = "int64", mask = "bool" }
    for n, d in pairs(want) do
      assert.are.equal(d, b[n].dtype, n)
      local ref = a[n].dtype == d and a[n] or a[n]:half():contiguous()
      assert.is_true(b[n]:equal(ref), n)
    end
    for _, e in ipairs(npz_dump(dir .. "/half.npz")) do
      assert.are.equal(want[e.name], e.dtype)
    end
    -- 0.1 as float16 is 0.0999755859375
    assert.are.same({ 0.0999755859375, -0.5 }, b["layer.0.bias"]:totable())
  end)

  it("--map applies a recipe's rules (renames, drops, layouts)", function()
    local dir = H.tmpdir()
    local src = sample(dir, "npz")
    H.write(dir .. "/recipe.lua", [[
local graft = require "graft"
return {
  { "^layer%.(%d+)%.weight$", "fc%1.w", "t" },
  { "^layer%.(%d+)%.bias$", "fc%1.b" },
  { "^steps$", graft.drop },
  { ".", graft.keep },
}
]])
    local _, err, code = run("convert", src, dir .. "/out.safetensors", "--map", dir .. "/recipe.lua")
    assert.are.equal(0, code, err)
    local a, b = graft.open(src), graft.open(dir .. "/out.safetensors")
    local names = graft.names(b)
    table.sort(names)
    assert.are.same({ "fc0.b", "fc0.w", "fc1.w", "mask" }, names)
    assert.are.same({ 3, 2 }, b["fc0.w"].shape)
    assert.are.same({ { 1.5, 4 }, { -2.25, 5.5 }, { 3, -6 } }, b["fc0.w"]:totable())
    assert.is_true(b["fc1.w"]:equal(a["layer.1.weight"]:t()))
    assert.is_true(b["fc0.b"]:equal(a["layer.0.bias"]))
    assert.is_true(b.mask:equal(a.mask))
  end)

  it("--map accepts a recipe returning a function, and keeps its order in npz", function()
    local dir = H.tmpdir()
    local src = sample(dir, "safetensors")
    H.write(dir .. "/fn.lua", [[
return function(m)
  return { ["z.steps"] = m.steps, ["a.w"] = m["layer.0.weight"]:t():contiguous() }
end
]])
    local _, err, code = run("convert", src, dir .. "/out.npz", "--map", dir .. "/fn.lua")
    assert.are.equal(0, code, err)
    local np = npz_dump(dir .. "/out.npz")
    assert.are.equal("a.w", np[1].name)
    assert.are.same({ 1.5, 4, -2.25, 5.5, 3, -6 }, np[1].values)
    assert.are.equal("z.steps", np[2].name)
    assert.are.same({ 7, 8, 9 }, np[2].values)
  end)

  it("--max-shard-size writes Hugging Face shards and an index", function()
    local dir = H.tmpdir()
    graft.save(dir .. "/big.npz", { a = graft.zeros({ 300 }), b = graft.zeros({ 300 }) })
    local _, err, code = run("convert", dir .. "/big.npz", dir .. "/model.safetensors",
      "--max-shard-size", "1500")
    assert.are.equal(0, code, err)
    local files = H.ls(dir)
    table.sort(files)
    assert.are.same({ "big.npz", "model-00001-of-00002.safetensors",
      "model-00002-of-00002.safetensors", "model.safetensors.index.json" }, files)
    assert.are.same({ "a", "b" }, graft.names(graft.open(dir .. "/model.safetensors.index.json")))
  end)

  it("shows a progress bar when stderr is a terminal", function()
    local dir = H.tmpdir()
    local src = sample(dir, "safetensors")
    local ok = os.execute("command -v script >/dev/null 2>&1")
    if not ok then
      pending("the terminal half of this test needs `script` (bsdutils), not installed here")
      return
    end
    local cmd = string.format("cd %s && %s %s convert %s %s", ROOT, ENV, GRAFT,
      H.q(src), H.q(dir .. "/tty.npz"))
    local p = io.popen("script -qec " .. H.q(cmd) .. " /dev/null </dev/null 2>&1")
    local tty = p:read("a")
    local closed, _, code = p:close()
    assert.is_true(closed, tty)
    assert.are.equal(0, code)
    assert.truthy(tty:find("tty.npz [", 1, true), tty)
    assert.truthy(tty:find("100%", 1, true), tty)
    assert.is_true(graft.open(dir .. "/tty.npz").steps:equal(graft.open(src).steps))
  end)
end)

describe("graft show", function()
  after_each(H.cleanup)

  it("prints the tensor, its stats and small values", function()
    local src = sample(H.tmpdir(), "safetensors")
    local out, err, code = run("show", src, "layer.0.weight")
    assert.are.equal(0, code, err)
    local l = lines(out)
    assert.are.equal("Tensor(float32, {2,3})", l[1])
    assert.truthy(l[2]:find("^min %-6%s+max 5%.5%s+mean 0%.958333%s+std 3%.93811%s"), l[2])
    assert.truthy(l[2]:find("nan 0$"), l[2])
    assert.are.equal("[1.5, -2.25, 3.0, 4.0, 5.5, -6.0]", l[3])
    out, _, code = run("show", src, "mask")
    assert.are.equal(0, code)
    assert.truthy(out:find("[true, false, true]", 1, true), out)
  end)

  it("shows string and empty tensors of real files", function()
    local npz = H.real("npz/numpy-pr21994-savez/py3-arr-savez.npz")
    if not npz then return end
    local out, err, code = run("show", npz, "foo")
    assert.are.equal(0, code, err)
    assert.are.equal('Tensor(string, {})\n["bar"]\n', out)
    local dir = H.tmpdir()
    graft.save(dir .. "/e.npy", { e = graft.zeros({ 0, 3 }) })
    out, err, code = run("show", dir .. "/e.npy", "e")
    assert.are.equal(0, code, err)
    assert.are.equal("Tensor(float32, {0,3})\n[]\n", out)
  end)

  it("a missing tensor is an error naming file and tensor", function()
    local src = sample(H.tmpdir(), "npz")
    local out, err, code = run("show", src, "nope")
    assert.are.equal("", out)
    assert_clean_error(err, code, src, "nope")
  end)
end)

describe("graft diff", function()
  after_each(H.cleanup)

  it("exit 0 when the same, 1 with the differences listed", function()
    local dir = H.tmpdir()
    local a = sample(dir, "safetensors")
    local b = sample(dir, "npz")
    local out, err, code = run("diff", a, b)
    assert.are.equal(0, code, err)
    assert.are.equal("same\n", out)

    local t = sample_tensors()
    t["layer.0.weight"] = graft.tensor({ { 1.5, -2.25, 3 }, { 4, 5.5, -6.25 } }, "float32")
    t.steps = nil
    t.extra = graft.zeros({ 1 })
    t.mask = graft.tensor({ true, false }, "bool")
    graft.save(dir .. "/other.npz", t)
    out, err, code = run("diff", a, dir .. "/other.npz")
    assert.are.equal(1, code, err)
    assert.truthy(out:find("values: layer.0.weight max abs diff 0.25\n", 1, true), out)
    assert.truthy(out:find("only in A: steps\n", 1, true), out)
    assert.truthy(out:find("only in B: extra\n", 1, true), out)
    assert.truthy(out:find("shape: mask {3} vs {2}\n", 1, true), out)
    assert.truthy(out:find("\n4 differences\n$"), out)
  end)

  it("--atol accepts small differences; --map renames A first", function()
    local dir = H.tmpdir()
    local a = sample(dir, "safetensors")
    local t = sample_tensors()
    t["layer.0.weight"] = graft.tensor({ { 1.5, -2.25, 3 }, { 4, 5.5, -6.001 } }, "float32")
    graft.save(dir .. "/near.npz", t)
    local _, _, code = run("diff", a, dir .. "/near.npz")
    assert.are.equal(1, code)
    local out
    out, _, code = run("diff", a, dir .. "/near.npz", "--atol", "0.01")
    assert.are.equal(0, code)
    assert.are.equal("same\n", out)

    local renamed = {}
    for n, v in pairs(sample_tensors()) do renamed["m." .. n] = v end
    graft.save(dir .. "/renamed.npz", renamed)
    H.write(dir .. "/r.lua", 'return { { "^(.*)$", "m.%1" } }')
    out, _, code = run("diff", a, dir .. "/renamed.npz", "--map", dir .. "/r.lua")
    assert.are.equal(0, code, out)
  end)

  it("a missing file is an error (status 2, not 'different')", function()
    local a = sample(H.tmpdir(), "npz")
    local _, err, code = run("diff", a, "/nonexistent/b.npz")
    assert.are.equal(2, code)
    assert_clean_error(err, code, "/nonexistent/b.npz")
  end)
end)

describe("graft run", function()
  after_each(H.cleanup)

  it("runs a recipe with its arguments as ... and arg", function()
    local dir = H.tmpdir()
    H.write(dir .. "/r.lua", [[
local graft = require "graft"
local n, out = ...
print(#arg, arg[0] ~= nil, n, out)
graft.save(out, { x = graft.zeros({ tonumber(n) }) })
]])
    local out, err, code = run("run", dir .. "/r.lua", "3", dir .. "/x.npy", "--not-an-option")
    assert.are.equal(0, code, err)
    assert.are.equal("3\ttrue\t3\t" .. dir .. "/x.npy\n", out)
    assert.are.same({ 3 }, graft.open(dir .. "/x.npy").x.shape)
  end)

  it("runs the bundled transplant example", function()
    local dir = H.tmpdir()
    local out, err, code = run("run", "examples/transplant.lua",
      "examples/data/tiny_cnn_keras.h5", dir .. "/t.pt")
    assert.are.equal(0, code, err)
    assert.truthy(out:find("transplant verified", 1, true), out)
    assert.are.equal(6, #graft.names(graft.open(dir .. "/t.pt")))
    -- The real test of a transplant: the PyTorch model loaded with the
    -- written state dict computes what the Keras model computes. Keras's
    -- forward pass (NHWC, HWIO kernels, valid padding, flatten in H, W, C
    -- order) is written out in numpy from the .h5 with h5py.
    local res = H.py([[
import sys, h5py, numpy as np, torch
f = h5py.File(sys.argv[1], "r")
w = lambda l, n: f[l][l][n + ":0"][()]
x = np.random.default_rng(0).standard_normal((5, 6, 6, 3)).astype(np.float32)
def conv(x, k, b):
    kh, kw = k.shape[:2]
    n, h, wd, _ = x.shape
    out = np.zeros((n, h - kh + 1, wd - kw + 1, k.shape[3]), np.float64)
    for i in range(kh):
        for j in range(kw):
            out += np.einsum("nhwc,co->nhwo", x[:, i:i + out.shape[1], j:j + out.shape[2], :], k[i, j])
    return out + b
y = conv(conv(x, w("conv1", "kernel"), w("conv1", "bias")), w("conv2", "kernel"), w("conv2", "bias"))
keras = y.reshape(5, -1) @ w("dense", "kernel") + w("dense", "bias")
model = torch.nn.Sequential()
model.add_module("conv1", torch.nn.Conv2d(3, 8, 3))
model.add_module("conv2", torch.nn.Conv2d(8, 16, 3))
model.add_module("flatten", torch.nn.Flatten())
model.add_module("fc", torch.nn.Linear(64, 10))
model.load_state_dict(torch.load(sys.argv[2], weights_only=True), strict=True)
with torch.no_grad():
    out = model(torch.from_numpy(x).permute(0, 3, 1, 2)).double().numpy()
# float32 sums of ~100 products against float64: compare relative to scale
print("rel_diff", float(np.abs(out - keras).max() / np.abs(keras).max()))
]], "examples/data/tiny_cnn_keras.h5", dir .. "/t.pt")
    local d = tonumber(res:match("rel_diff (%S+)"))
    assert.truthy(d and d < 1e-5, res)
  end)

  it("a failing recipe gives its message, no traceback", function()
    local dir = H.tmpdir()
    H.write(dir .. "/bad.lua", 'error("the shapes do not fit")')
    local _, err, code = run("run", dir .. "/bad.lua")
    assert.are.equal(2, code)
    assert.truthy(err:find("the shapes do not fit", 1, true), err)
    assert.falsy(err:find("traceback", 1, true), err)
    H.write(dir .. "/syntax.lua", "return {")
    _, err, code = run("run", dir .. "/syntax.lua")
    assert.are_not.equal(0, code)
    assert.truthy(err:find(dir .. "/syntax.lua", 1, true), err)
    assert.falsy(err:find("traceback", 1, true), err)
  end)
end)

describe("graft errors", function()
  after_each(H.cleanup)

  it("a missing file names the file", function()
    for _, cmd in ipairs({ "ls", "show" }) do
      local out, err, code = run(cmd, "/nonexistent/model.safetensors", cmd == "show" and "x" or nil)
      assert.are.equal("", out)
      assert_clean_error(err, code, "/nonexistent/model.safetensors", "No such file")
    end
    local dir = H.tmpdir()
    local out, err, code = run("convert", "/nonexistent/in.npz", dir .. "/out.npz")
    assert.are.equal("", out)
    assert_clean_error(err, code, "/nonexistent/in.npz")
    assert.are.same({}, H.ls(dir))
  end)

  it("an unknown command or a missing argument prints usage", function()
    local out, err, code = run("frobnicate", "x")
    assert.are.equal("", out)
    assert.are.equal(2, code)
    assert.truthy(err:find("unknown command 'frobnicate'", 1, true), err)
    assert.truthy(err:find("graft run RECIPE.lua [ARGS...]\n", 1, true), err)
    out, err, code = run("ls")
    assert_clean_error(err, code, "ls needs a FILE")
    out, err, code = run("convert", "a.npz", "b.npz", "--dtype")
    assert_clean_error(err, code, "--dtype needs a value")
    out, err, code = run("--help")
    assert.are.equal(0, code)
    assert.truthy(err:find("^usage: graft ls"), err)
  end)

  it("a file of an unknown format names the file", function()
    local dir = H.tmpdir()
    H.write(dir .. "/notes.bin", "hello, this is not a model\n")
    local _, err, code = run("ls", dir .. "/notes.bin")
    assert_clean_error(err, code, dir .. "/notes.bin", "unrecognised format")
    H.write(dir .. "/empty.safetensors", "")
    _, err, code = run("ls", dir .. "/empty.safetensors")
    assert_clean_error(err, code, dir .. "/empty.safetensors", "empty file")
    _, err, code = run("ls", dir)
    assert_clean_error(err, code, dir)
  end)

  it("a corrupt file names the file", function()
    local dir = H.tmpdir()
    local src = sample(dir, "safetensors")
    local bytes = H.read(src)
    H.write(dir .. "/cut.safetensors", bytes:sub(1, #bytes - 5))
    local _, err, code = run("ls", dir .. "/cut.safetensors")
    assert_clean_error(err, code, dir .. "/cut.safetensors")
  end)

  it("convert to an unknown extension or a bad dtype names the problem", function()
    local dir = H.tmpdir()
    local src = sample(dir, "npz")
    local _, err, code = run("convert", src, dir .. "/out.weird")
    assert_clean_error(err, code, dir .. "/out.weird", "extension")
    _, err, code = run("convert", src, dir .. "/out.npz", "--dtype", "float17")
    assert_clean_error(err, code, "float17")
    local files = H.ls(dir)
    assert.are.same({ "model.npz" }, files)
  end)
end)

describe("graft --open", function()
  after_each(H.cleanup)

  -- Torch7 files with 4-byte longs (gen_t7.py): the one open option a
  -- user may need on the command line (long_size forces what detection
  -- finds).
  local function t7_files()
    local dir = H.tmpdir()
    H.py(H.read("spec/fixtures/gen_t7.py"), dir)
    return dir .. "/model_le4.t7", dir .. "/model_le.t7"
  end

  it("passes open options to graft.open in ls, show, convert, diff, check and verify", function()
    local le4, le8 = t7_files()
    local out, err, code = run("ls", le4, "--open", "long_size=4")
    assert.are.equal(0, code, err)
    assert.matches("modules%.1%.weight%s+float64%s+{2,3}", out)
    out, err, code = run("show", le4, "modules.1.bias", "--open=long_size=4")
    assert.are.equal(0, code, err)
    local dst = H.tmpdir() .. "/m.safetensors"
    out, err, code = run("convert", le4, dst, "--open", "long_size=4")
    assert.are.equal(0, code, err)
    out, err, code = run("diff", dst, le8)
    assert.are.equal(0, code, out .. err)
    out, err, code = run("diff", le4, le4, "--open", "long_size=4")
    assert.are.equal(0, code, out .. err)
    out, err, code = run("check", le4, le4, "--open", "long_size=4")
    assert.are.equal(0, code, out .. err)
    out, err, code = run("verify", le4, "--open", "long_size=4")
    assert.are.equal(0, code, out .. err)
  end)

  it("a wrong value, a key the format does not take and a malformed list exit 2 and say why", function()
    local le4 = t7_files()
    local _, err, code = run("ls", le4, "--open", "long_size=8")
    assert.are.equal(2, code)
    assert.matches("long_size = 8 given, but the file reads with 4-byte longs", err, 1, true)
    _, err, code = run("ls", le4, "--open", "long_sise=4")
    assert.are.equal(2, code)
    assert.matches('option "long_sise" is not accepted by format t7; did you mean "long_size"?',
      err, 1, true)
    _, err, code = run("ls", le4, "--open", "long_size")
    assert.are.equal(2, code)
    assert.matches('graft: --open takes KEY=VALUE[,KEY=VALUE...], got "long_size"', err, 1, true)
  end)
end)
