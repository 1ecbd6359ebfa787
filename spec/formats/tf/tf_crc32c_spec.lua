-- CRC-32C (Castagnoli) as TF tables and bundles use it: the SSE4.2 path
-- and the table path against published vectors and against each other,
-- and the LevelDB/TF mask.
local core = require "graft.core"

local function bytes(f, n)
  local t = {}
  for i = 0, n - 1 do t[#t + 1] = string.char(f(i) % 256) end
  return table.concat(t)
end

-- RFC 3720 (iSCSI) appendix B.4 and the usual check value.
local VECTORS = {
  { "", 0x00000000 },
  { "123456789", 0xE3069283 },
  { string.rep("\0", 32), 0x8A9136AA },
  { string.rep("\255", 32), 0x62A8AB43 },
  { bytes(function(i) return i end, 32), 0x46DD794E },
  { bytes(function(i) return 31 - i end, 32), 0x113FDB5C },
}

local function each_path(fn)
  for _, force in ipairs({ false, true }) do
    core.testing.crc32c_force_table(force)
    local ok, err = pcall(fn, core.testing.crc32c_path())
    core.testing.crc32c_force_table(false)
    if not ok then error(err, 0) end
  end
end

describe("crc32c", function()
  it("the table path can be forced, and is the only path without SSE4.2", function()
    core.testing.crc32c_force_table(true)
    assert.equal("table", core.testing.crc32c_path())
    core.testing.crc32c_force_table(false)
    local p = core.testing.crc32c_path()
    assert.truthy(p == "sse4.2" or p == "table")
  end)

  it("gives the published values on both paths", function()
    each_path(function(path)
      for _, v in ipairs(VECTORS) do
        assert.equal(v[2], core.testing.crc32c(v[1]), path .. ": " .. #v[1] .. " bytes")
      end
    end)
  end)

  it("both paths agree on every length and alignment up to 300 bytes", function()
    local data = bytes(function(i) return (i * 131 + 7) ~ (i >> 3) end, 300)
    local hw = {}
    for len = 0, 300, 7 do
      for off = 1, 9 do hw[#hw + 1] = core.testing.crc32c(data:sub(off, off + len - 1)) end
    end
    core.testing.crc32c_force_table(true)
    local k = 0
    for len = 0, 300, 7 do
      for off = 1, 9 do
        k = k + 1
        assert.equal(hw[k], core.testing.crc32c(data:sub(off, off + len - 1)))
      end
    end
    core.testing.crc32c_force_table(false)
  end)

  it("extends a finished crc: value(a .. b) = extend(value(a), b)", function()
    each_path(function()
      local a, b = "The quick brown fox ", "jumps over the lazy dog"
      assert.equal(core.testing.crc32c(a .. b), core.testing.crc32c(b, core.testing.crc32c(a)))
    end)
  end)

  it("masks as LevelDB does and unmasks back", function()
    -- mask(c) = rotr(c, 15) + 0xA282EAD8
    local c = 0xE3069283
    local rot = ((c >> 15) | (c << 17)) & 0xFFFFFFFF
    assert.equal((rot + 0xA282EAD8) & 0xFFFFFFFF, core.testing.crc32c_mask(c))
    for _, v in ipairs({ 0, 1, 0xFFFFFFFF, 0x12345678, c }) do
      assert.equal(v, core.testing.crc32c_unmask(core.testing.crc32c_mask(v)))
    end
  end)
end)
