-- Views and copies against numpy: random shapes, random chains of
-- permute/transpose/narrow/select/flip/split/cat/stack/reshape, the
-- materialised bytes compared with numpy's for the same chain.
local graft = require "graft"
local H = require "helper"

local function rand_bytes(n, fmt)
  local parts = {}
  for i = 1, n do
    parts[i] = fmt == "f" and string.pack("<f", (math.random() - 0.5) * 100)
      or string.pack("<i2", math.random(-30000, 30000))
  end
  return table.concat(parts)
end

-- Pick a random applicable operation for a tensor of `shape`; returns the
-- op line and a function applying it in graft, and the new shape.
local function random_op(shape)
  local nd = #shape
  local choices = { "contiguous", "unsqueeze" }
  if nd >= 2 then
    choices[#choices + 1] = "permute"; choices[#choices + 1] = "permute"
    choices[#choices + 1] = "transpose"; choices[#choices + 1] = "catflip"
  end
  if nd == 2 then choices[#choices + 1] = "t" end
  if nd >= 1 then
    choices[#choices + 1] = "narrow"; choices[#choices + 1] = "flip"
    choices[#choices + 1] = "split"; choices[#choices + 1] = "reshape"
    choices[#choices + 1] = "stack"
    if nd >= 2 then choices[#choices + 1] = "select" end
  end
  local op = choices[math.random(#choices)]
  local new = {}
  for i, v in ipairs(shape) do new[i] = v end
  if op == "permute" then
    local p = {}
    for i = 1, nd do p[i] = i end
    for i = nd, 2, -1 do local j = math.random(i); p[i], p[j] = p[j], p[i] end
    for i = 1, nd do new[i] = shape[p[i]] end
    return "permute " .. table.concat(p, " "), function(x) return x:permute(table.unpack(p)) end, new
  elseif op == "transpose" then
    local a, b = math.random(nd), math.random(nd)
    new[a], new[b] = shape[b], shape[a]
    local na, nb = a, b
    if math.random() < 0.5 then na = a - nd - 1 end -- negative dims too
    return ("transpose %d %d"):format(a, b), function(x) return x:transpose(na, nb) end, new
  elseif op == "t" then
    new[1], new[2] = shape[2], shape[1]
    return "t", function(x) return x:t() end, new
  elseif op == "narrow" then
    local d = math.random(nd)
    if shape[d] < 1 then return "contiguous", function(x) return x:contiguous() end, new end
    local s = math.random(shape[d]); local n = math.random(0, shape[d] - s + 1)
    new[d] = n
    return ("narrow %d %d %d"):format(d, s, n), function(x) return x:narrow(d, s, n) end, new
  elseif op == "select" then
    local d = math.random(nd)
    if shape[d] < 1 then return "contiguous", function(x) return x:contiguous() end, new end
    local i = math.random(shape[d])
    table.remove(new, d)
    return ("select %d %d"):format(d, i), function(x) return x:select(d, i) end, new
  elseif op == "flip" then
    local d = math.random(nd)
    return ("flip %d"):format(d), function(x) return x:flip(d) end, new
  elseif op == "split" then
    local d = math.random(nd)
    if shape[d] < 1 then return "contiguous", function(x) return x:contiguous() end, new end
    local size = math.random(shape[d])
    local pieces = (shape[d] + size - 1) // size
    local k = math.random(pieces)
    new[d] = math.min(size, shape[d] - (k - 1) * size)
    return ("split %d %d %d"):format(size, d, k), function(x) return x:split(size, d)[k] end, new
  elseif op == "catflip" then
    local d = math.random(nd)
    new[d] = shape[d] * 2
    return ("catflip %d"):format(d), function(x) return graft.cat({ x, x:flip(d) }, d) end, new
  elseif op == "stack" then
    local d = math.random(nd + 1)
    table.insert(new, d, 2)
    return ("stack %d"):format(d), function(x) return graft.stack({ x, x:flip(1) }, d) end, new
  elseif op == "unsqueeze" then
    local d = math.random(nd + 1)
    table.insert(new, d, 1)
    return ("unsqueeze %d"):format(d), function(x) return x:unsqueeze(d) end, new
  elseif op == "reshape" then
    local n = 1
    for _, v in ipairs(shape) do n = n * v end
    local a = 1
    for c = 2, 12 do if n % c == 0 and math.random() < 0.5 then a = c break end end
    new = { a, n // a }
    return ("reshape %d %d"):format(a, n // a), function(x) return x:reshape(a, n // a) end, new
  end
  return "contiguous", function(x) return x:contiguous() end, new
end

describe("views and copies against numpy", function()
  local core = require "graft.core"
  for _, mode in ipairs({ "vector", "scalar" }) do
  it("agree on 300 random chains over random shapes (float32 and int16), " .. mode .. " tiles", function()
    core.testing.copy_force_scalar(mode == "scalar")
    finally(function() core.testing.copy_force_scalar(false) end)
    math.randomseed(20261123)
    local dir = H.tmpdir()
    local cases = {}
    for i = 1, 300 do
      -- every 4th case is big enough for the 8 x 8 vector tiles
      local big = i % 4 == 0
      local nd = big and math.random(2, 3) or math.random(1, 4)
      local shape, n = {}, 1
      for d = 1, nd do shape[d] = math.random(1, big and 40 or 7); n = n * shape[d] end
      local dtype = i % 3 == 0 and "int16" or "float32"
      local bytes = rand_bytes(n, dtype == "float32" and "f" or "h")
      local x = graft.tensor(bytes, dtype, shape)
      local lines = { (dtype == "float32" and "<f4" or "<i2") .. " " .. table.concat(shape, " ") }
      local cur = shape
      for _ = 1, math.random(1, 5) do
        local line, f, new = random_op(cur)
        x = f(x)
        cur = new
        lines[#lines + 1] = line
      end
      assert.are.same(cur, x.shape)
      H.write(dir .. "/case_" .. i .. ".bin", bytes)
      H.write(dir .. "/case_" .. i .. ".txt", table.concat(lines, "\n") .. "\n")
      cases[i] = { x = x, ops = lines }
    end
    H.py(H.read("spec/fixtures/views_ref.py"), dir)
    for i, c in ipairs(cases) do
      local want = H.read(dir .. "/out_" .. i .. ".bin")
      local got = c.x:bytes()
      local shape = H.read(dir .. "/out_" .. i .. ".shape")
      assert.are.equal(shape, table.concat(c.x.shape, " "), table.concat(c.ops, " | "))
      assert(got == want, "case " .. i .. " differs: " .. table.concat(c.ops, " | "))
    end
  end)
  end

  it("keeps views free: permute, narrow and cast share the storage", function()
    local x = graft.zeros({ 4, 5, 6 })
    local a = x:permute(3, 1, 2)
    local b = a:narrow(1, 2, 3):half()
    assert.are.equal(select(1, x:storage_id()), select(1, b:storage_id()))
    assert.are.same({ 3, 4, 5 }, b.shape)
    assert.are.equal("float16", b.dtype)
  end)

  it("takes 1-based and negative dimensions and rejects bad ones", function()
    local x = graft.zeros({ 2, 3, 4 })
    assert.are.same({ 4, 3, 2 }, x:permute(3, 2, 1).shape)
    assert.are.same({ 2, 4, 3 }, x:transpose(-1, -2).shape)
    assert.are.same({ 2, 3 }, x:select(-1, 4).shape)
    assert.has_error(function() x:transpose(0, 1) end)
    assert.has_error(function() x:transpose(4, 1) end)
    assert.has_error(function() x:permute(1, 1, 2) end)
    assert.has_error(function() x:narrow(1, 2, 2) end)
    assert.has_error(function() x:select(2, 4) end)
  end)

  it("reshape views contiguous data, copies otherwise, and view refuses", function()
    local x = graft.tensor({ { 1, 2, 3 }, { 4, 5, 6 } })
    assert.are.same({ 1, 2, 3, 4, 5, 6 }, x:reshape(6):totable())
    assert.are.same({ { 1, 2 }, { 3, 4 }, { 5, 6 } }, x:reshape(3, -1):totable())
    assert.are.same({ 1, 4, 2, 5, 3, 6 }, x:t():reshape(6):totable())
    assert.has_error(function() x:t():view(6) end)
    assert.has_error(function() x:reshape(4) end)
  end)

  it("prints and exposes read-only fields", function()
    local x = graft.zeros({ 3, 3, 64, 128 })
    assert.are.equal("Tensor(float32, {3,3,64,128})", tostring(x))
    assert.are.equal(4, x.ndim)
    assert.are.equal(73728, x.numel)
    assert.has_error(function() x.dtype = "float16" end)
  end)

  it("builds tensors from tables, numbers and bytes", function()
    assert.are.same({ { 1, 2 }, { 3, 4 } }, graft.tensor({ { 1, 2 }, { 3, 4 } }, "int64"):totable())
    assert.are.equal(2.5, graft.tensor(2.5, "float64"):totable())
    assert.are.same({ true, false }, graft.tensor({ 1, 0 }, "bool"):totable())
    assert.are.same({ 1, -1 }, graft.tensor(string.pack("<i4<i4", 1, -1), "int32"):totable())
    assert.has_error(function() graft.tensor({ { 1, 2 }, { 3 } }) end)
    assert.has_error(function() graft.tensor("abc", "float32") end)
  end)

  it("compares with equal, allclose, max_abs_diff and stats", function()
    local a = graft.tensor({ 1, 2, 3 })
    local b = graft.tensor({ 1, 2, 3.00001 })
    assert.is_true(a:equal(a:clone()))
    assert.is_false(a:equal(b))
    assert.is_true(a:allclose(b))
    assert.is_false(a:allclose(graft.tensor({ 1, 2, 4 })))
    assert.is_true(a:max_abs_diff(graft.tensor({ 1, 2, 5 })) == 2)
    local s = graft.tensor({ 1, 2, 3, 4 }):stats()
    assert.are.equal(1, s.min); assert.are.equal(4, s.max); assert.are.equal(2.5, s.mean)
    assert.is_true(math.abs(s.std - math.sqrt(1.25)) < 1e-12)
    assert.is_false(graft.tensor({ 0 / 0 }):equal(graft.tensor({ 0 / 0 })))
  end)

  it("materialises big transposes through the tiled and threaded paths", function()
    -- 3x3x256x512 HWIO -> OIHW, compared against a slow element walk
    local n = 3 * 3 * 64 * 96
    local parts = {}
    for i = 1, n do parts[i] = string.pack("<f", i) end
    local x = graft.tensor(table.concat(parts), "float32", { 3, 3, 64, 96 })
    local y = x:permute(4, 3, 1, 2):contiguous()
    local fy = y:bytes()
    -- spot check: y[o][i][h][w] == x[h][w][i][o]
    for _ = 1, 2000 do
      local h, w, i, o = math.random(3), math.random(3), math.random(64), math.random(96)
      local xi = ((h - 1) * 3 * 64 * 96 + (w - 1) * 64 * 96 + (i - 1) * 96 + (o - 1))
      local yi = ((o - 1) * 64 * 9 + (i - 1) * 9 + (h - 1) * 3 + (w - 1))
      assert.are.equal(xi + 1, (string.unpack("<f", fy, yi * 4 + 1)))
    end
    local big = graft.zeros({ 1024, 1024 }):t():half():contiguous()
    assert.are.same({ 1024, 1024 }, big.shape)
  end)
end)

describe("lazy casts", function()
  it("round through the presented dtype wherever data is read", function()
    local h = graft.tensor({ 0.1, 70000 }):half()
    assert.are.same({ 0.0999755859375, math.huge }, h:totable())
    assert.is_true(h:equal(h:contiguous()))
    assert.are.equal(math.huge, h:stats().max)
    assert.are.equal(0, h:max_abs_diff(h:contiguous():float()) == 0 and 0 or 1)
    -- float32 -> float16 -> float32 keeps the float16 rounding
    local back = h:float():bytes()
    assert.are.equal(string.pack("<f<f", 0.0999755859375, math.huge), back)
  end)

  it("compare a narrowing integer cast through its values, not the stored ones", function()
    local t = graft.tensor({ 300, 1 }, "int64"):cast("int8")
    assert.are.same({ 44, 1 }, t:totable())
    assert.is_true(t:equal(graft.tensor({ 44, 1 }, "int64")))
    assert.are.equal(0, t:max_abs_diff(graft.tensor({ 44, 1 }, "int64")))
    local h = graft.tensor({ 0.1 }, "float64"):float()
    assert.is_true(h:equal(graft.tensor({ 0.1 }, "float32")))
    assert.is_false(h:equal(graft.tensor({ 0.1 }, "float64")))
  end)

  it("reshape works on 0-d tensors", function()
    assert.are.same({ 1 }, graft.tensor(3.0):reshape(1).shape)
    assert.are.same({ 1, 1 }, graft.tensor(3.0):reshape(1, 1).shape)
  end)
end)
