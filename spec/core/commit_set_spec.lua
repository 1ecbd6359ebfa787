-- Multi-file outputs commit as a set (issue 13): overwriting a TF
-- checkpoint or a sharded safetensors set goes from the complete old set,
-- through "no checkpoint at this prefix / no index", to the complete new
-- set; never new data under an old index.
-- Proven at every step of the commit by stopping there as a kill would
-- (core.testing.commit_crash_before), not by random kills. Temporary files
-- carry the writer's pid; a later save removes those of dead writers.
local graft = require "graft"
local core = require "graft.core"
local H = require "helper"

local function values(m)
  local out = {}
  for _, n in ipairs(graft.names(m)) do out[n] = H.flat(m[n]:totable()) end
  return out
end

local OLD = { a = { 1, 2, 3 }, b = { 10, 20 } }
local NEW = { a = { 7, 8, 9 }, b = { 70, 80 } }

local function tensors(v)
  return { a = graft.tensor(v.a, "float32"), b = graft.tensor(v.b, "float32") }
end

local function temp_files(dir)
  local t = {}
  for _, f in ipairs(H.ls(dir)) do
    if f:find("%.graft%-") then t[#t + 1] = f end
  end
  return t
end

describe("a TF checkpoint overwritten in place", function()
  after_each(H.cleanup)

  -- 2 data shards + the index: steps 0 (remove the old index), 1 and 2
  -- (rename the shards), 3 (rename the index).
  for step = 0, 3 do
    it("stopped before commit step " .. step .. " leaves the old set or no checkpoint, never a mix", function()
      local dir = H.tmpdir()
      local prefix = dir .. "/model"
      graft.save(prefix, tensors(OLD), { format = "tf", num_shards = 2 })
      core.testing.commit_crash_before(step)
      local err = H.raises(function()
        graft.save(prefix, tensors(NEW), { format = "tf", num_shards = 2 })
      end)
      assert.matches("stopped before commit step " .. step, err, 1, true)
      local ok, m = pcall(graft.open, prefix)
      if step == 0 then
        assert.is_true(ok, tostring(m))
        assert.are.same(OLD, values(m))
      else
        assert.is_false(ok)
        assert.matches("model: cannot open: No such file or directory", m, 1, true)
      end
      -- The next save completes the new set and clears our own leftovers
      -- only once we are gone; clear them here as a restart would.
      for _, f in ipairs(temp_files(dir)) do os.remove(dir .. "/" .. f) end
      graft.save(prefix, tensors(NEW), { format = "tf", num_shards = 2 })
      assert.are.same(NEW, values(graft.open(prefix)))
    end)
  end

  it("without a stop, replaces the set and leaves no temporary file", function()
    local dir = H.tmpdir()
    graft.save(dir .. "/model", tensors(OLD), { format = "tf", num_shards = 2 })
    graft.save(dir .. "/model", tensors(NEW), { format = "tf", num_shards = 2 })
    assert.are.same(NEW, values(graft.open(dir .. "/model")))
    assert.are.same({}, temp_files(dir))
  end)
end)

describe("a sharded safetensors set overwritten in place", function()
  after_each(H.cleanup)

  -- a and b are 12 and 8 bytes: a 12-byte limit puts each in its own shard.
  local function save_set(dir, v)
    graft.save(dir .. "/model.safetensors", tensors(v), { max_shard_size = 12, order = { "a", "b" } })
  end
  local SET = { "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors",
                "model.safetensors.index.json" }

  -- 2 shards + the index: steps 0 (remove the old index), 1 and 2 (rename
  -- the shards), 3 (rename the index).
  for step = 0, 3 do
    it("stopped before commit step " .. step .. " leaves the old set or no index, never a mix", function()
      local dir = H.tmpdir()
      local index = dir .. "/model.safetensors.index.json"
      save_set(dir, OLD)
      assert.are.same(SET, H.ls(dir))
      core.testing.commit_crash_before(step)
      local err = H.raises(function() save_set(dir, NEW) end)
      assert.matches("stopped before commit step " .. step, err, 1, true)
      local ok, m = pcall(graft.open, index)
      if step == 0 then
        assert.is_true(ok, tostring(m))
        assert.are.same(OLD, values(m))
      else
        assert.is_false(ok)
        assert.matches("model.safetensors.index.json: cannot open: No such file or directory", m, 1, true)
      end
      for _, f in ipairs(temp_files(dir)) do os.remove(dir .. "/" .. f) end
      save_set(dir, NEW)
      assert.are.same(NEW, values(graft.open(index)))
    end)
  end

  it("without a stop, replaces the set and leaves no temporary file", function()
    local dir = H.tmpdir()
    save_set(dir, OLD)
    save_set(dir, NEW)
    assert.are.same(NEW, values(graft.open(dir .. "/model.safetensors.index.json")))
    assert.are.same(SET, H.ls(dir))
  end)

  it("a failed write leaves the old set whole and no temporary file", function()
    local dir = H.tmpdir()
    save_set(dir, OLD)
    local bad = tensors(NEW)
    bad.b = graft.zeros({ 2 }, "complex128") -- safetensors has no complex type
    local err = H.raises(function()
      graft.save(dir .. "/model.safetensors", bad, { max_shard_size = 12, order = { "a", "b" } })
    end)
    assert.matches("model-00002-of-00002.safetensors", err, 1, true)
    assert.are.same(OLD, values(graft.open(dir .. "/model.safetensors.index.json")))
    assert.are.same(SET, H.ls(dir))
  end)
end)

describe("temporary files", function()
  after_each(H.cleanup)

  it("are named with the writer's pid; a save removes those of dead writers and keeps live ones", function()
    local dir = H.tmpdir()
    local p = io.popen("sh -c 'echo $$'")
    local dead = p:read("l")
    p:close()
    local target = dir .. "/w.safetensors"
    local dead_tmp = dir .. "/.w.safetensors.graft-" .. dead .. "-abc123"
    -- pid 1 is always alive: its leftovers are not ours to remove.
    local live_tmp = dir .. "/.w.safetensors.graft-1-abc123"
    local other = dir .. "/.x.safetensors.graft-" .. dead .. "-abc123"
    H.write(dead_tmp, "partial")
    H.write(live_tmp, "partial")
    H.write(other, "partial")
    graft.save(target, { t = graft.tensor({ 1 }, "float32") })
    assert.is_false(H.exists(dead_tmp))
    assert.is_true(H.exists(live_tmp))
    assert.is_true(H.exists(other))
    assert.are.same({ 1 }, H.flat(graft.open(target).t:totable()))
  end)
end)
