-- Memory caps (issue 13, item 4): sizes a file declares are checked before
-- anything is allocated, against what the file can hold and against the
-- overall cap GRAFT_MAX_BYTES; refusals name the file and the tensor or
-- member. Fixtures: spec/fixtures/gen_caps.py (crafted npz and torch files)
-- and hand-built TF bundles (spec/tf_helper.lua).
local graft = require "graft"
local core = require "graft.core"
local H = require "helper"
local T = require "tf_helper"

local DIR

local function says(err, ...)
  for _, s in ipairs({ ... }) do
    assert.truthy(err:find(s, 1, true), "error " .. err .. " does not say " .. s)
  end
  return err
end

-- Runs lua code in a fresh interpreter with GRAFT_MAX_BYTES = cap (nil:
-- unset); returns its stdout.
local function lua_with_cap(cap, code)
  local env = cap and ("GRAFT_MAX_BYTES=" .. H.q(cap) .. " ") or "env -u GRAFT_MAX_BYTES "
  local prelude = 'package.path = "lua/?.lua;lua/?/init.lua;spec/?.lua;" .. package.path; '
    .. 'package.cpath = "build/?.so;" .. package.cpath; '
  local f = io.popen(env .. "lua5.4 -e " .. H.q(prelude .. code) .. " 2>&1")
  local out = f:read("a")
  f:close()
  return out
end

describe("memory caps", function()
  setup(function()
    DIR = H.tmpdir()
    H.py(H.read("spec/fixtures/gen_caps.py"), DIR)
  end)
  teardown(H.cleanup)

  local saved
  before_each(function() saved = core.testing.max_bytes() end)
  after_each(function() core.testing.max_bytes(saved) end)

  it("an npz member declaring 2 GiB from 4.6 KB is refused before allocation", function()
    local p = DIR .. "/liar.npz"
    local err = H.raises(function()
      local m = graft.open(p)
      return m.x:bytes()
    end)
    says(err, p, 'member "x.npy"', "2147483648", "1032:1")
  end)

  it("a legal npz member inflating past GRAFT_MAX_BYTES is refused, naming file and member", function()
    local p = DIR .. "/inflates.npz"
    core.testing.max_bytes(1 << 20)
    local m = graft.open(p)                    -- the index costs nothing
    assert.same({ 64, 1024, 1024 }, m.x.shape)
    says(H.raises(function() return m.x:bytes() end),
      p, "67108864", "GRAFT_MAX_BYTES", "1048576")
    -- A small view of it is small, but its storage (the whole member) is
    -- what would be inflated: refused naming the member.
    says(H.raises(function() return m.x:narrow(1, 1, 1):contiguous() end),
      p, "x.npy", "67108864", "GRAFT_MAX_BYTES")
    core.testing.max_bytes(saved)
    assert.equal(0, m.x:narrow(1, 64, 1):contiguous():bytes():byte(1))
  end)

  it("a zero-stride torch view of 4 bytes is legal, but materialising 10^9 bytes of it is capped", function()
    local p = DIR .. "/zerostride.pt"
    local m = graft.open(p)
    assert.same({ 1000000, 1000 }, m.w.shape)
    -- Small parts of an expanded tensor read fine (zero strides are legal).
    local part = m.w:narrow(1, 1, 3):narrow(2, 1, 2):contiguous()
    assert.same({ { 0, 0 }, { 0, 0 }, { 0, 0 } }, part:totable())
    core.testing.max_bytes(64 << 20)
    for _, f in ipairs({ "contiguous", "bytes" }) do
      says(H.raises(function() return m.w[f](m.w) end),
        p, "1000000x1000", "4 stored bytes", "1000000000", "GRAFT_MAX_BYTES")
    end
  end)

  it("a repeat-last GraphDef Const of 10^9 floats from one value is capped on first use, naming the file", function()
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
    -- NodeDef "w" (Const) whose TensorProto is float [10^6, 10^3] with one
    -- float_val: TensorFlow repeats the last value over the whole shape.
    local tensor = vint(1, 1) .. len(2, len(2, vint(1, 1000000)) .. len(2, vint(1, 1000)))
      .. len(5, string.pack("<f", 1.5))
    local node = len(1, len(1, "w") .. len(2, "Const") .. len(5, len(1, "value") .. len(2, len(8, tensor))))
    local p = H.tmpdir() .. "/repeat.pb"
    H.write(p, node)
    core.testing.max_bytes(64 << 20)
    local m = graft.open(p)
    assert.same({ 1000000, 1000 }, m.w.shape)
    says(H.raises(function() return m.w:narrow(1, 1, 1):contiguous() end),
      p, "4000000000", "GRAFT_MAX_BYTES")
    says(H.raises(function() return m.w:bytes() end), p, "1000000x1000", "GRAFT_MAX_BYTES")
  end)

  it("GRAFT_MAX_BYTES is read from the environment, with K/M/G suffixes", function()
    local code = 'local g = require "graft"; local c = require "graft.core"; '
      .. 'print(c.testing.max_bytes()); '
      .. 'local ok, e = pcall(function() return g.open(' .. string.format("%q", DIR .. "/zerostride.pt")
      .. ').w:contiguous() end); print(ok, e)'
    local out = lua_with_cap("2M", code)
    assert.truthy(out:find("^2097152\n"), out)
    says(out, "false", "zerostride.pt", "over the GRAFT_MAX_BYTES cap of 2097152 bytes")
    out = lua_with_cap("lots", code)
    says(out, 'GRAFT_MAX_BYTES="lots" is not a byte count')
    -- Unset: physical memory (more than 1 GB on any machine that runs this).
    out = lua_with_cap(nil, code)
    assert.truthy(tonumber(out:match("^(%d+)")) > (1 << 30), out)
  end)

  it("TF string entries declaring more strings or longer strings than their bytes", function()
    local dir = H.tmpdir()
    -- 2^40 strings in a 4-byte entry: refused at open.
    local p = T.write(dir, { s = T.entry({ dtype = 7, shape = { 1 << 40 }, size = 4, crc = 0 }) }, { "abcd" })
    says(H.raises(function() graft.open(p) end), p .. ".index", 'key "s"', "cannot fit")
    -- One string claiming 2^62 bytes: refused on first read, nothing allocated.
    local d2 = H.tmpdir()
    local lc = core.testing.crc32c(string.pack("<I4", 0))
    local body = T.varint(1 << 62) .. string.pack("<I4", core.testing.crc32c_mask(lc)) .. "ab"
    p = T.write(d2, { s = T.entry({ dtype = 7, shape = { 1 }, size = #body, crc = 0 }) }, { body })
    local m = graft.open(p)
    says(H.raises(function() return m.s:totable() end), p .. ".index", 'key "s"')
  end)

  it("a big TF index opens within a bounded memory per entry (measured in a subprocess)", function()
    -- 250,000 entries keep the suite's peak memory modest; the report has
    -- the 10^6 figures. Only memory is asserted (no timing assertions).
    local N = 250000
    local dir = H.tmpdir()
    local build = 'local T = require "tf_helper"; local data = string.pack("<f", 1.5); '
      .. 'local e = {}; for i = 1, ' .. N .. ' do e[string.format("v%07d/kernel", i)] = '
      .. 'T.plain(T.DT.float, { 1 }, data, 0) end; T.write(' .. string.format("%q", dir) .. ', e, { data })'
    lua_with_cap(nil, build)
    local measure = 'local g = require "graft"; local c = require "graft.core"; '
      .. 'collectgarbage(); local r0, t0 = c.maxrss(), c.now(); '
      .. 'local m = g.open(' .. string.format("%q", dir .. "/ckpt") .. '); '
      .. 'local n = 0; for _ in pairs(m) do n = n + 1 end; '
      .. 'assert(#g.names(m) == n); '
      .. 'print(n, c.maxrss() - r0, c.now() - t0)'
    local out = lua_with_cap(nil, measure)
    local n, rss, secs = out:match("^(%d+)\t(%d+)\t(%S+)")
    assert.equal(N, tonumber(n), out)
    local per = tonumber(rss) / N
    print(string.format("\ntf index: %d entries, %.0f bytes of peak RSS each, opened in %.2f s",
      N, per, tonumber(secs)))
    -- Measured at 8f3b1b5: ~3,190 bytes an entry; ~2,400-2,500 at 55b9bbd;
    -- ~240 since the index opens into its compact form (lazy handles; see
    -- docs/API.md). The issue's target, 300, is the bound.
    -- Under a sanitizer build (make asan) every allocation carries the
    -- sanitizer's header and redzones, which more than double Lua's small
    -- objects (a 40-byte string or handle), and its quarantine keeps the
    -- blocks freed while the index is read: measured 835 bytes an entry.
    local sanitized = (os.getenv("LD_PRELOAD") or ""):find("asan") ~= nil
    local bound = sanitized and 4 * 300 or 300
    assert.truthy(per < bound, string.format("%.0f bytes an entry", per))
  end)
end)
