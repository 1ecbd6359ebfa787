-- Phantoms (src/tensor/storage.h gt_storage_phantom): tensors with a shape
-- and a dtype and no bytes, which graft.map's dry run hands to transforms.
-- Views, casts, arithmetic, reshape copies and cat of phantoms give
-- phantoms of the right shape and dtype; anything needing values fails
-- with the phantom's message instead of reading anything.
local graft = require "graft"
local core = require "graft.core"
local H = require "helper"

describe("phantom tensors", function()
  it("carry a shape and a dtype and allocate nothing", function()
    local p = core.phantom({ 1000000, 1000 }, "float32")
    assert.is_true(core.is_phantom(p))
    assert.are.same({ 1000000, 1000 }, p.shape)
    assert.are.equal("float32", p.dtype)
    assert.are.equal(4e9, p.nbytes)
    assert.is_false(core.is_phantom(graft.zeros({ 2 })))
  end)

  it("go through views, casts, arithmetic, reshape copies and cat as phantoms", function()
    local p = core.phantom({ 8, 4 }, "float32")
    local r = p:t():reshape(2, 16)          -- a copy for real tensors
    assert.is_true(core.is_phantom(r))
    assert.are.same({ 2, 16 }, r.shape)
    local h = p:permute(2, 1):cast("float16")
    assert.are.same({ 4, 8 }, h.shape)
    assert.are.equal("float16", h.dtype)
    local c = graft.cat({ p, graft.zeros({ 2, 4 }) }, 1)
    assert.is_true(core.is_phantom(c))
    assert.are.same({ 10, 4 }, c.shape)
    local s = p + 1
    assert.are.same({ 8, 4 }, s.shape)
    assert.are.same({ 4, 8 }, p:t():contiguous().shape)
  end)

  it("refuse anything that needs values", function()
    local p = core.phantom({ 3 }, "float32")
    for _, f in ipairs({
      function() return p:totable() end,
      function() return p:equal(graft.zeros({ 3 })) end,
      function() return (p * 2):totable() end,
    }) do
      local err = H.raises(f)
      assert.truthy(err:find("no data: a dry run's stand-in has a shape and a dtype only", 1, true), err)
    end
    local dir = H.tmpdir()
    local err = H.raises(function() graft.save(dir .. "/x.npy", { x = p }) end)
    assert.truthy(err:find("no data", 1, true), err)
    assert.are.same({}, H.ls(dir))
  end)
end)
