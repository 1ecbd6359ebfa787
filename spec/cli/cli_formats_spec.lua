-- `graft formats [--json]`: the registry as the command prints it, run as
-- a user runs it (lua5.4 bin/graft with this checkout's lua/ and build/).
local graft = require "graft"
local json = require "graft.json"
local H = require "helper"

local ROOT = H.ROOT
local ENV = H.GRAFT_ENV
local GRAFT = H.GRAFT_CMD

local run = H.graft

describe("graft formats", function()
  after_each(H.cleanup)

  it("prints every format, what it does, its extensions and options", function()
    local out, err, code = run("formats")
    assert.are.equal(0, code, err)
    assert.are.equal("", err)
    for _, f in ipairs(graft.formats()) do
      local rw = (f.read and "read" or "") .. (f.read and f.write and "," or "")
        .. (f.write and "write" or "")
      local line = out:match("\n?(" .. f.name:gsub("%p", "%%%0") .. " +[^\n]*)\n")
      assert.truthy(line, f.name)
      assert.truthy(line:find(rw, 1, true), line)
      for _, e in ipairs(f.extensions) do assert.truthy(line:find("." .. e, 1, true), line) end
      assert.truthy(out:find("  " .. f.description .. "\n", 1, true), f.name)
      for _, op in ipairs({ "open", "save" }) do
        for k, d in pairs(f[op .. "_options"]) do
          assert.truthy(out:find("  " .. op .. " " .. k .. " +" .. d:gsub("%p", "%%%0")), k)
        end
      end
    end
    assert.truthy(out:find("\ntorch +read,write +%.pt %.pth %.bin\n"), out)
    assert.truthy(out:find("\n  save max_shard_size ", 1, true), out)
  end)

  it("--json prints graft.formats() as one JSON array", function()
    local out, err, code = run("formats", "--json")
    assert.are.equal(0, code, err)
    local list = json.decode(out)
    assert.are.same(graft.formats(), list)
    assert.is_true(out:find('"extensions":[]', 1, true) ~= nil, "empty lists are arrays")
  end)

  it("is listed in the usage", function()
    local _, err = run("--help")
    assert.truthy(err:find("graft formats [--json]", 1, true), err)
  end)
end)

describe("graft convert with format options", function()
  after_each(H.cleanup)

  it("passes --some-option VALUE to graft.save as some_option, checked against OUT's format", function()
    local dir = H.tmpdir()
    graft.save(dir .. "/in.npz", { a = graft.tensor({ 1, 2 }), b = graft.tensor({ 3 }) })
    local _, err, code = run("convert", dir .. "/in.npz", dir .. "/out.npz", "--compress", "true")
    assert.are.equal(0, code, err)
    assert.are.equal("deflated\n", H.py([[
import sys, zipfile
print("deflated" if zipfile.ZipFile(sys.argv[1]).infolist()[0].compress_type == 8 else "stored")
]], dir .. "/out.npz"))
    assert.is_true(os.execute("mkdir " .. H.q(dir .. "/ck")))
    _, err, code = run("convert", dir .. "/in.npz", dir .. "/ck/model", "--format", "tf",
      "--num-shards", "2", "--checkpoint-state", "false")
    assert.are.equal(0, code, err)
    assert.are.equal(2, graft.meta(graft.open(dir .. "/ck/model")).num_shards)
    assert.is_false(H.exists(dir .. "/ck/checkpoint"))
    _, err, code = run("convert", dir .. "/in.npz", dir .. "/x.pt", "--max-shard-size", "1MB")
    assert.are.equal(2, code)
    assert.are.equal("graft: save " .. dir .. '/x.pt: option "max_shard_size" is not accepted by '
      .. "format torch (accepted: dtype, format, order, progress, provenance); formats that take it: safetensors\n",
      err)
    _, err, code = run("convert", dir .. "/in.npz", dir .. "/x.npz", "--compres", "true")
    assert.are.equal(2, code)
    -- the CLI refuses an option no format takes, named as typed
    assert.truthy(err:find('unknown option --compres; did you mean --compress?',
      1, true), err)
  end)
end)
