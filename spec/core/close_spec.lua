-- `local m <close> = graft.open(p)`: closing a model releases its tensors
-- (and so its mappings); the table stays a plain name -> tensor table.
local graft = require "graft"
local H = require "helper"

local function sample(dir)
  local t = { a = graft.tensor({ 1, 2, 3 }), b = graft.tensor({ { 1, 2 }, { 3, 4 } }, "float64") }
  graft.save(dir .. "/m.safetensors", t)
  return dir .. "/m.safetensors"
end

describe("closing a model", function()
  after_each(H.cleanup)

  it("<close> releases every tensor; using one afterwards is an error", function()
    local p = sample(H.tmpdir())
    local a, b
    do
      local m <close> = graft.open(p)
      a, b = m.a, m.b
      assert.are.same({ 1, 2, 3 }, a:totable())
    end
    assert.are.equal("Tensor(released)", tostring(a))
    assert.are.equal("Tensor(released)", tostring(b))
    for _, use in ipairs({
      function() return a:contiguous() end, function() return a.shape end,
      function() return b:totable() end, function() return b:t() end,
    }) do
      local ok, err = pcall(use)
      assert.is_false(ok)
      assert.truthy(tostring(err):find("tensor is released (closed)", 1, true), err)
    end
  end)

  it("releases on error unwinding too", function()
    local p = sample(H.tmpdir())
    local a
    local ok = pcall(function()
      local m <close> = graft.open(p)
      a = m.a
      error("boom")
    end)
    assert.is_false(ok)
    assert.are.equal("Tensor(released)", tostring(a))
  end)

  it("the model stays a plain table: indexing, pairs, names and meta unchanged", function()
    local p = sample(H.tmpdir())
    local m <close> = graft.open(p)
    local mt = getmetatable(m)
    assert.truthy(mt and mt.__close)
    assert.is_nil(mt.__index)
    assert.is_nil(mt.__newindex)
    assert.is_nil(mt.__pairs)
    local n = 0
    for k, v in pairs(m) do
      n = n + 1
      assert.is_true(graft.is_tensor(v), k)
    end
    assert.are.equal(2, n)
    assert.is_nil(m.nope)
    assert.are.same({ "b", "a" }, graft.names(m))
    assert.are.equal("safetensors", graft.meta(m).format)
    m.c = graft.tensor({ 9 })
    assert.is_true(rawequal(m.c, rawget(m, "c")))
  end)

  it("graft.close does the same by hand; other models of the same file are untouched", function()
    local p = sample(H.tmpdir())
    local m1, m2 = graft.open(p), graft.open(p)
    local kept = m1.a:clone()
    graft.close(m1)
    assert.are.equal("Tensor(released)", tostring(m1.a))
    assert.are.same({ 1, 2, 3 }, m2.a:totable())
    assert.are.same({ { 1, 2 }, { 3, 4 } }, m2.b:totable())
    assert.are.same({ 1, 2, 3 }, kept:totable())
  end)

  it("closes models of every container: npz, torch, sharded safetensors, HDF5, TF", function()
    local dir = H.tmpdir()
    local t = { ["d/w"] = graft.tensor({ { 1, 2 } }), ["d/b"] = graft.tensor({ 3 }) }
    graft.save(dir .. "/a.npz", t)
    graft.save(dir .. "/a.pt", t)
    graft.save(dir .. "/a.h5", t)
    graft.save(dir .. "/s.safetensors", t, { max_shard_size = 4 })
    graft.save(dir .. "/ck", t, { format = "tf" })
    for _, f in ipairs({ "a.npz", "a.pt", "a.h5", "s.safetensors.index.json", "ck" }) do
      local w
      do
        local m <close> = graft.open(dir .. "/" .. f)
        w = m["d/w"]
        assert.are.same({ { 1, 2 } }, w:totable(), f)
      end
      assert.are.equal("Tensor(released)", tostring(w), f)
    end
  end)
end)
