-- Saving to a torch file what a torch file cannot hold, or in a way that
-- would damage something: each is a clear error naming what is wrong, and
-- nothing is left behind (no temporary file, the old target untouched).
local graft = require "graft"
local H = require "helper"

local function no_trace(dir, want)
  table.sort(want)
  local got = H.ls(dir)
  table.sort(got)
  assert.are.same(want, got)
end

describe("torch writer refuses", function()
  after_each(H.cleanup)

  it("string tensors (torch has no string type), naming the tensor", function()
    local dir = H.tmpdir()
    H.py("import numpy as np, sys; np.save(sys.argv[1], np.array(['ab', 'c']))", dir .. "/s.npy")
    local t = { ok = graft.zeros({ 2 }), bad = graft.open(dir .. "/s.npy").s }
    os.remove(dir .. "/s.npy")
    local err = H.raises(function() graft.save(dir .. "/x.pt", t) end)
    assert.truthy(err:find('tensor "bad": dtype string cannot be written to a torch file', 1, true), err)
    no_trace(dir, {})
  end)

  it("values a weights file cannot hold", function()
    local dir = H.tmpdir()
    local w = graft.zeros({ 1 })
    local cases = {
      { { w = w, f = print }, '"f": cannot write a function' },
      { { w = w, nested = { x = io.stdout } }, '"nested.x": cannot write a userdata' },
      { { w = w, [2.5] = 1 }, "dict keys must be strings or integers (got number)" },
      { { w = w, [true] = 1 }, "dict keys must be strings or integers (got boolean)" },
      { { w = w, s = "\xff\xfe" }, "is not UTF-8" },
      { { ["caf\xe9"] = w }, "is not UTF-8" },
    }
    local loop = { w = w }
    loop.self = loop
    cases[#cases + 1] = { loop, '"self": the table contains itself' }
    for i, c in ipairs(cases) do
      local err = H.raises(function() graft.save(dir .. "/x.pt", c[1]) end)
      assert.truthy(err:find(c[2], 1, true), i .. ": " .. err)
    end
    no_trace(dir, {})
  end)

  it("to write over a file the tensors are read from", function()
    local dir = H.tmpdir()
    local path = dir .. "/in.safetensors"
    graft.save(path, { a = graft.tensor({ 1, 2, 3 }) })
    local before = H.read(path)
    local m = graft.open(path)
    local err = H.raises(function() graft.save(path, { a = m.a:t() }, { format = "torch" }) end)
    assert.truthy(err:find("in.safetensors", 1, true), err)
    assert.are.equal(before, H.read(path))
    no_trace(dir, { "in.safetensors" })
  end)

  it("a tensor that fails while streaming: no temp file, old target intact", function()
    local dir = H.tmpdir()
    local path = dir .. "/model.pt"
    graft.save(path, { old = graft.tensor({ 7 }) })
    local before = H.read(path)
    local bad = graft.tensor({ 1, 0 / 0, 3 }):cast("int32")
    local err = H.raises(function()
      graft.save(path, { a = graft.zeros({ 1000 }), b = bad })
    end)
    assert.truthy(err:find('tensor "b"', 1, true), err)
    assert.are.equal(before, H.read(path))
    no_trace(dir, { "model.pt" })
  end)
end)
