-- The safetensors package (Rust) as the oracle (issue 11): files graft
-- writes are read by safetensors.safe_open and safetensors.torch.load_file
-- bit-exactly, and for the same tensors and metadata graft's file is byte
-- for byte what safetensors.torch.save_file writes; save_file's files are
-- read by graft bit-exactly. One oracle process (spec/fixtures/st_oracle.py).
local graft = require "graft"
local json = require "graft.json"
local H = require "helper"

local DTYPES = { "float64", "float32", "float16", "bfloat16", "int64", "int32", "int16", "int8",
                 "uint8", "bool", "float8_e4m3fn", "float8_e5m2", "uint16", "uint32", "uint64" }

local function triple(t)
  return { t.dtype, t.shape, H.hex(t:contiguous():bytes()) }
end

-- Deterministic bytes (an LCG), so floats hold every bit pattern.
local function noise(n, seed)
  local out, x = {}, seed
  for i = 1, n do
    x = (x * 1103515245 + 12345) % 2147483648
    out[i] = string.char((x >> 16) & 0xff)
  end
  return table.concat(out)
end

describe("safetensors oracle", function()
  local dir, res
  local files = {}
  setup(function()
    dir = H.tmpdir()
    -- every dtype, raw bit patterns (bool as 0/1)
    local all = {}
    for i, dt in ipairs(DTYPES) do
      local size = graft.zeros({ 1 }, dt).nbytes
      local b = noise(12 * size, i)
      if dt == "bool" then b = b:gsub(".", function(c) return string.char(c:byte() % 2) end) end
      all["w." .. dt] = graft.tensor(b, dt, { 3, 4 })
    end
    all.scalar = graft.tensor(2.5)
    all.empty = graft.zeros({ 0, 4 }, "float16")
    files["all.safetensors"] = all
    graft.save(dir .. "/all.safetensors", all)
    -- views and lazy casts, streamed; metadata; names save_file would sort
    local base = graft.tensor(noise(4 * 24, 99), "float32", { 4, 6 })
    local views = {
      ["z.t"] = base:t(), ["b.narrow"] = base:narrow(1, 2, 2), ["a.half"] = base:half(),
      ["m.flip"] = base:flip(2), ["é.unicode"] = base:cast("bfloat16"),
      ["n.f8"] = base:cast("float8_e4m3fn"),
    }
    files["views.safetensors"] = views
    graft.save(dir .. "/views.safetensors", views, { metadata = { format = "pt", note = "graft" } })
    -- a table graft opened, written back
    graft.save(dir .. "/again.safetensors", graft.open(dir .. "/all.safetensors"))
    files["again.safetensors"] = all
    res = json.decode(H.oracle(H.read("spec/fixtures/st_oracle.py"), dir,
      "all.safetensors", "views.safetensors", "again.safetensors"))
  end)
  teardown(H.cleanup)

  for _, f in ipairs({ "all.safetensors", "views.safetensors", "again.safetensors" }) do
    it("safe_open and load_file read graft's " .. f .. " bit-exactly", function()
      local r = res[f]
      local n = 0
      for name, t in pairs(files[f]) do
        n = n + 1
        assert.are.same(triple(t), r.safe_open[name], name)
        assert.are.same(triple(t), r.load_file[name], name)
      end
      local m = 0
      for _ in pairs(r.safe_open) do m = m + 1 end
      assert.are.equal(n, m)
    end)

    it("graft's " .. f .. " is byte for byte safetensors.torch.save_file's", function()
      assert.is_true(res[f].identical)
    end)
  end

  it("metadata graft writes is the metadata safe_open returns", function()
    assert.are.same({ format = "pt", note = "graft" }, res["views.safetensors"].metadata)
  end)

  it("graft reads save_file's file bit-exactly, metadata included", function()
    local m = graft.open(dir .. "/torch.safetensors")
    local n = 0
    for name, want in pairs(res.written) do
      n = n + 1
      assert.are.same(want, triple(m[name]), name)
    end
    assert.are.equal(n, #graft.names(m))
    local meta = graft.meta(m)
    assert.are.same({ format = "pt", who = "save_file" }, meta.__metadata__)
  end)
end)
