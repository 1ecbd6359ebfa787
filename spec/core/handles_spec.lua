-- Tensor handles: every method returns a new handle sharing the storage
-- (never its receiver), so closing a result never releases its source and
-- closing the source never releases a result; a released handle raises a
-- clear error wherever it is used.
local graft = require "graft"
local H = require "helper"

local VALUES = { { 1, 2, 3 }, { 4, 5, 6 } }

local function src(dtype) return graft.tensor(VALUES, dtype or "float32") end

-- Each method on a receiver for which it may be a no-op (the result could
-- be the receiver itself). `make` builds the receiver, `call` the result.
local CASES = {
  { "contiguous of a contiguous tensor", src, function(t) return t:contiguous() end },
  { "contiguous of a view", function() return src():t() end, function(t) return t:contiguous() end },
  { "clone", src, function(t) return t:clone() end },
  { "float of float32", src, function(t) return t:float() end },
  { "double of float64", function() return src("float64") end, function(t) return t:double() end },
  { "half of float16", function() return src("float16") end, function(t) return t:half() end },
  { "bfloat16 of bfloat16", function() return src("bfloat16") end, function(t) return t:bfloat16() end },
  { "cast to the same dtype", function() return src("int32") end, function(t) return t:cast("int32") end },
  { "reshape to the same shape", src, function(t) return t:reshape(2, 3) end },
  { "reshape of a view that needs a copy", function() return src():t() end, function(t) return t:reshape(6) end },
  { "view to the same shape", src, function(t) return t:view({ 2, 3 }) end },
  { "permute by the identity", src, function(t) return t:permute(1, 2) end },
  { "transpose of a dimension with itself", src, function(t) return t:transpose(1, 1) end },
  { "t of a 1-d tensor", function() return src():reshape(6) end, function(t) return t:t() end },
  { "t of a 2-d tensor", src, function(t) return t:t() end },
  { "narrow to the whole dimension", src, function(t) return t:narrow(1, 1, 2) end },
  { "select", src, function(t) return t:select(1, 2) end },
  { "squeeze without size-1 dimensions", src, function(t) return t:squeeze() end },
  { "unsqueeze", src, function(t) return t:unsqueeze(1) end },
  { "flip", src, function(t) return t:flip(1) end },
  { "flip of a 0-d tensor", function() return graft.tensor(7, "int64") end, function(t) return t:flip() end },
  { "split into one piece", src, function(t) return t:split(2)[1] end },
  { "chunk into one piece", src, function(t) return t:chunk(1)[1] end },
  { "cat of one tensor", src, function(t) return graft.cat({ t }) end },
  { "stack of one tensor", src, function(t) return graft.stack({ t }) end },
}

describe("tensor handles", function()
  for _, c in ipairs(CASES) do
    local what, make, call = c[1], c[2], c[3]

    it(what .. ": a new handle; closing it leaves the source usable", function()
      local t = make()
      local before = t:bytes()
      do
        local r <close> = call(t)
        assert.is_false(rawequal(t, r))
        assert.truthy(graft.is_tensor(r))
      end
      assert.are.equal(before, t:bytes())
      assert.is_nil(tostring(t):find("released"))
    end)

    it(what .. ": closing the source leaves the result usable", function()
      local r, expect
      do
        local t <close> = make()
        r = call(t)
        expect = r:bytes()
      end
      assert.are.equal(expect, r:bytes())
      assert.is_nil(tostring(r):find("released"))
    end)
  end

  it("split and chunk give handles of their own", function()
    local t = src()
    local parts = t:split(1)
    for _, p in ipairs(parts) do getmetatable(p).__close(p) end
    assert.are.same(VALUES, t:totable())
    local chunks = t:chunk(2)
    getmetatable(t).__close(t)
    assert.are.same({ { 1, 2, 3 } }, chunks[1]:totable())
    assert.are.same({ { 4, 5, 6 } }, chunks[2]:totable())
  end)
end)

describe("released tensor handles", function()
  local function released()
    local t = src()
    do local u <close> = t end
    return t
  end

  local MSG = "graft: tensor is released %(closed%); this handle cannot be used"

  it("print as released and raise on every use", function()
    local t = released()
    assert.are.equal("Tensor(released)", tostring(t))
    for _, use in ipairs({
      function() return t.shape end,
      function() return t.dtype end,
      function() return t:float() end,
      function() return t:contiguous() end,
      function() return t:bytes() end,
      function() return t:totable() end,
      function() return t:stats() end,
      function() return t:equal(src()) end,
      function() return src():allclose(t) end,
      function() return src():max_abs_diff(t) end,
    }) do
      assert.matches(MSG, H.raises(use))
    end
  end)

  it("are still tensor handles, named as released by cat, stack and save", function()
    local t = released()
    assert.is_true(graft.is_tensor(t))
    assert.matches("graft: element 2 is a released tensor", H.raises(function() graft.cat({ src(), t }) end))
    assert.matches("graft: element 1 is a released tensor", H.raises(function() graft.stack({ t }) end))
    local dir = H.tmpdir()
    local err = H.raises(function() graft.save(dir .. "/x.safetensors", { w = t }) end)
    assert.matches('"w" is a released tensor', err)
    H.cleanup()
  end)

  it("close twice without harm and leave other handles on the storage alive", function()
    local t = src()
    local v = t:view(6)
    getmetatable(t).__close(t)
    getmetatable(t).__close(t)
    assert.are.same({ 1, 2, 3, 4, 5, 6 }, v:totable())
  end)
end)
