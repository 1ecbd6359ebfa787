-- dtype conversions, bit for bit, against numpy 1.24 / torch 1.13 (and an
-- independent float8 reference): spec/fixtures/gen_casts.py writes raw
-- little-endian inputs and expected outputs for every pair of dtypes, and
-- each case is checked on the vector path (F16C/AVX2 where the CPU has
-- them) and on the forced scalar path. Big-endian sources are covered by
-- the npy specs.
local graft = require "graft"
local core = require "graft.core"
local H = require "helper"

local SIZES = {
  float64 = 8, float32 = 4, float16 = 2, bfloat16 = 2, float8_e4m3fn = 1,
  float8_e5m2 = 1, int64 = 8, int32 = 4, int16 = 2, int8 = 1, uint64 = 8,
  uint32 = 4, uint16 = 2, uint8 = 1, bool = 1, complex64 = 8,
  complex128 = 16,
}

local function hex(s)
  return (s:reverse():gsub(".", function(c)
    return ("%02x"):format(c:byte())
  end))
end

-- Runs the generator; returns its directory and the parsed cases.
local function generate()
  local dir = H.tmpdir()
  H.py(H.read("spec/fixtures/gen_casts.py"), dir)
  local cases = {}
  for line in io.lines(dir .. "/cases.txt") do
    local name, sdt, ddt, n, sf, df =
      line:match("^(%S+) (%S+) (%S+) (%d+) (%S+) (%S+)$")
    if name then
      cases[#cases + 1] = {
        name = name, sdt = sdt, ddt = ddt, n = tonumber(n), sf = sf, df = df,
      }
    end
  end
  return dir, cases
end

-- Where got and want (n elements of ddt) first differ, for the message.
local function first_diff(c, src, got, want)
  local ss, ds = SIZES[c.sdt], SIZES[c.ddt]
  local count, first = 0, nil
  for i = 0, c.n - 1 do
    if got:sub(i * ds + 1, i * ds + ds) ~= want:sub(i * ds + 1, i * ds + ds)
    then
      count = count + 1
      first = first or i
    end
  end
  if not first then
    return ("lengths differ: got %d bytes, want %d"):format(#got, #want)
  end
  local function el(s, i, sz) return hex(s:sub(i * sz + 1, i * sz + sz)) end
  return ("%d of %d elements differ; first at index %d: %s 0x%s -> got "
    .. "%s 0x%s, want 0x%s"):format(count, c.n, first, c.sdt,
    el(src, first, ss), c.ddt, el(got, first, ds), el(want, first, ds))
end

local function with_scalar(on, fn)
  core.testing.cast_force_scalar(on)
  local ok, err = pcall(fn)
  core.testing.cast_force_scalar(false)
  if not ok then error(err, 0) end
end

describe("casts against the references", function()
  local ok, dir, cases = pcall(generate)
  if not ok then
    it("generates the reference data", function() error(dir, 0) end)
    return
  end
  local files = {}
  local function bytes(name)
    files[name] = files[name] or H.read(dir .. "/" .. name)
    return files[name]
  end

  teardown(function() H.cleanup() end)

  for _, c in ipairs(cases) do
    for _, scalar in ipairs({ false, true }) do
      local path = scalar and "scalar" or "vector"
      it(("%s: %s -> %s, %d elements (%s path)"):format(c.name, c.sdt,
        c.ddt, c.n, path), function()
        local src, want = bytes(c.sf), bytes(c.df)
        local got
        with_scalar(scalar, function()
          got = graft.tensor(src, c.sdt, { c.n }):cast(c.ddt):bytes()
        end)
        if got ~= want then
          error(c.name .. " (" .. path .. "): " .. first_diff(c, src, got,
            want), 0)
        end
      end)
    end
  end
end)

describe("cast paths", function()
  it("reports the vector units and the forced scalar mode", function()
    assert.is_string(core.testing.cast_paths())
    with_scalar(true, function()
      assert.matches("scalar", core.testing.cast_paths())
    end)
    assert.is_string(core.testing.cast_paths())
  end)
end)

-- Tensors of float dtype dt holding the given (exactly representable)
-- values: built as float64 and cast, which is exact for these values.
local function floats(dt, values)
  return graft.tensor(values, "float64", { #values }):cast(dt):contiguous()
end

describe("float -> int", function()
  local sources = { "float64", "float32", "float16", "bfloat16" }

  for _, scalar in ipairs({ false, true }) do
    local path = scalar and " (scalar path)" or ""

    it("truncates toward zero at the edges of the range" .. path, function()
      with_scalar(scalar, function()
        for _, sdt in ipairs(sources) do
          local t = floats(sdt, { 127.5, -127.5, 0.75, -0.75, -0.0 })
          assert.same({ 127, -127, 0, 0, 0 }, t:cast("int8"):totable())
          local u = floats(sdt, { 255, -0.75, 1.5 })
          assert.same({ 255, 0, 1 }, u:cast("uint8"):totable())
          if sdt ~= "bfloat16" then -- these need 9 significant bits
            assert.same({ -128 }, floats(sdt, { -128.5 }):cast("int8")
              :totable())
            assert.same({ 255 }, floats(sdt, { 255.5 }):cast("uint8")
              :totable())
          end
        end
        local big = floats("float64", { 9223372036854774784.0,
          -9223372036854775808.0 })
        assert.same({ math.tointeger(9223372036854774784),
          math.mininteger }, big:cast("int64"):totable())
      end)
    end)

    it("raises on NaN, naming the value and the element" .. path, function()
      with_scalar(scalar, function()
        for _, sdt in ipairs(sources) do
          local t = floats(sdt, { 1, 2, 0 / 0, 4 })
          for _, ddt in ipairs({ "int8", "int32", "uint64" }) do
            local err = H.raises(function() t:cast(ddt):bytes() end)
            assert.matches("graft: cannot cast", err)
            assert.matches("NaN", err)
            assert.matches("element 2", err)
            assert.matches(sdt, err)
          end
        end
      end)
    end)

    it("raises out of range, naming the value and the element" .. path,
      function()
        with_scalar(scalar, function()
          local cases = {
            { "int8", 128.0 }, { "int8", -129.0 }, { "uint8", 256.0 },
            { "uint8", -1.0 }, { "int16", 32768.0 }, { "uint16", -1 },
            { "int32", 2147483648.0 }, { "uint32", 4294967296.0 },
            { "int64", 9223372036854775808.0 }, { "uint64", -1.0 },
            { "uint64", 18446744073709551616.0 }, { "int32", 1 / 0 },
            { "int64", -1 / 0 },
          }
          for _, c in ipairs(cases) do
            local t = floats("float64", { 0, c[2] })
            local err = H.raises(function() t:cast(c[1]):bytes() end)
            assert.matches("out of range", err)
            assert.matches("element 1", err)
            assert.matches(c[1], err)
          end
          local h = floats("float16", { 65504 })
          local err = H.raises(function() h:cast("int16"):bytes() end)
          assert.matches("65504", err)
        end)
      end)
  end
end)

describe("int and bool casts", function()
  it("wraps int -> int like numpy's astype", function()
    local t = graft.tensor({ 300, -129, -1, 65535, 2147483647 }, "int64",
      { 5 })
    assert.same({ 44, 127, -1, -1, -1 }, t:cast("int8"):totable())
    assert.same({ 44, 127, 255, 255, 255 }, t:cast("uint8"):totable())
    assert.same({ 300, 65407, 65535, 65535, 65535 },
      t:cast("uint16"):totable())
    local u = graft.tensor({ -1, -2 }, "int32", { 2 })
    assert.same({ 4294967295, 4294967294 }, u:cast("uint32"):totable())
    assert.same({ -1, -2 }, u:cast("uint64"):cast("int64"):totable())
  end)

  it("maps anything to bool as value ~= 0, NaN and -0 included", function()
    local f = floats("float32", { 0, -0.0, 0 / 0, 1e-45, -2, 1 / 0 })
    assert.same({ false, false, true, true, true, true },
      f:cast("bool"):totable())
    local i = graft.tensor({ 0, 256, -1 }, "int32", { 3 })
    assert.same({ false, true, true }, i:cast("bool"):totable())
    -- 256 wraps to 0 in uint8, but bool tests the whole value
    assert.same({ 0, 0, 255 }, i:cast("uint8"):totable())
  end)

  it("maps bool to 0 or 1, whatever byte stands for true", function()
    local b = graft.tensor("\0\1\2\255", "bool", { 4 })
    assert.same({ 0, 1, 1, 1 }, b:cast("int8"):totable())
    assert.same({ 0, 1, 1, 1 }, b:cast("float32"):totable())
    assert.equal("\0\1\1\1", b:cast("uint8"):bytes())
    assert.equal(string.pack("<I2I2I2I2", 0, 0x3C00, 0x3C00, 0x3C00),
      b:cast("float16"):bytes())
    assert.equal(string.pack("<I2I2I2I2", 0, 0x3F80, 0x3F80, 0x3F80),
      b:cast("bfloat16"):bytes())
    assert.equal("\0\56\56\56", b:cast("float8_e4m3fn"):bytes())
  end)

  it("refuses complex <-> real and anything <-> string", function()
    local c = graft.tensor(string.pack("<ff", 1, 2), "complex64", { 1 })
    local err = H.raises(function() c:cast("float32"):bytes() end)
    assert.matches("cannot cast complex64 to float32", err)
    local f = floats("float32", { 1 })
    err = H.raises(function() f:cast("complex128"):bytes() end)
    assert.matches("cannot cast float32 to complex128", err)
    assert.matches("string", H.raises(function()
      f:cast("string"):bytes()
    end))
  end)
end)
