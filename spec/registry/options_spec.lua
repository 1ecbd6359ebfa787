-- The options contract of graft.open and graft.save: every key is a
-- common option or one the chosen format declares; anything else is an
-- error naming the key, the format and the accepted keys.
local graft = require "graft"
local H = require "helper"

local function keys(t)
  local out = {}
  for k in pairs(t) do out[#out + 1] = k end
  table.sort(out)
  return out
end

local function escape(s)
  return (s:gsub("%p", "%%%0"))
end

describe("options", function()
  after_each(H.cleanup)

  it("an unknown open option is an error for every format, before the file is touched", function()
    for _, f in ipairs(graft.formats()) do
      local p = "/nonexistent/x." .. f.name
      local err = H.raises(function() graft.open(p, { format = f.name, bogus = 1 }) end)
      assert.are.equal(string.format('graft: open %s: option "bogus" is not accepted by format %s '
        .. "(accepted: %s)", p, f.name, table.concat(keys(f.open_options), ", ")), err)
    end
  end)

  it("an unknown save option is an error for every writable format, nothing written", function()
    local dir = H.tmpdir()
    local t = { ["d/w"] = graft.tensor({ 1, 2 }) }
    for _, f in ipairs(graft.formats()) do
      if f.write then
        local p = dir .. "/x"
        local err = H.raises(function() graft.save(p, t, { format = f.name, bogus = true }) end)
        assert.are.equal(string.format('graft: save %s: option "bogus" is not accepted by format %s '
          .. "(accepted: %s)", p, f.name, table.concat(keys(f.save_options), ", ")), err)
      end
    end
    assert.are.same({}, H.ls(dir))
  end)

  it("an option of another format is an error naming the formats that take it", function()
    local dir = H.tmpdir()
    local t = { ["d/w"] = graft.tensor({ 1, 2 }) }
    local formats = graft.formats()
    for _, op in ipairs({ "open", "save" }) do
      for _, f in ipairs(formats) do
        if (op == "open" and f.read) or (op == "save" and f.write) then
          for _, g in ipairs(formats) do
            for k in pairs(g[op .. "_options"]) do
              if f[op .. "_options"][k] == nil then
                local p = dir .. "/y"
                local opts = { format = f.name, [k] = "x" }
                local err = H.raises(function()
                  if op == "open" then graft.open(p, opts) else graft.save(p, t, opts) end
                end)
                local head = string.format('graft: %s %s: option "%s" is not accepted by format %s',
                  op, p, k, f.name)
                assert.truthy(err:find("^" .. escape(head)), err)
                assert.truthy(err:find("formats that take it: [^\n]*" .. g.name), err)
              end
            end
          end
        end
      end
    end
    assert.are.same({}, H.ls(dir))
  end)

  it("the examples: max_shard_size on a .pt, metadata on an .npz, select on safetensors", function()
    local dir = H.tmpdir()
    local t = { w = graft.tensor({ 1, 2 }) }
    local err = H.raises(function() graft.save(dir .. "/x.pt", t, { max_shard_size = "1GB" }) end)
    assert.are.equal("graft: save " .. dir .. '/x.pt: option "max_shard_size" is not accepted by '
      .. "format torch (accepted: dtype, format, order, progress, provenance); formats that take it: safetensors",
      err)
    err = H.raises(function() graft.save(dir .. "/x.npz", t, { metadata = { a = "b" } }) end)
    assert.are.equal("graft: save " .. dir .. '/x.npz: option "metadata" is not accepted by '
      .. "format npz (accepted: compress, dtype, format, order, progress, provenance); formats that take it: "
      .. "safetensors, gguf", err)
    graft.save(dir .. "/x.safetensors", t)
    err = H.raises(function() graft.open(dir .. "/x.safetensors", { select = "model" }) end)
    assert.are.equal("graft: open " .. dir .. '/x.safetensors: option "select" is not accepted by '
      .. "format safetensors (accepted: format); formats that take it: torch, pickle", err)
    assert.are.same({ "x.safetensors" }, H.ls(dir))
  end)

  it("a misspelt key suggests the closest accepted one", function()
    local dir = H.tmpdir()
    local t = { w = graft.tensor({ 1, 2 }) }
    local err = H.raises(function() graft.save(dir .. "/x.safetensors", t, { dtyp = "float16" }) end)
    assert.are.equal("graft: save " .. dir .. '/x.safetensors: option "dtyp" is not accepted by '
      .. 'format safetensors; did you mean "dtype"? (accepted: dtype, format, max_shard_size, '
      .. "metadata, order, progress, provenance)", err)
    err = H.raises(function() graft.save(dir .. "/x.safetensors", t, { max_shard_sise = 10 }) end)
    assert.truthy(err:find('did you mean "max_shard_size"?', 1, true), err)
    err = H.raises(function() graft.save(dir .. "/x.npz", t, { compres = true }) end)
    assert.truthy(err:find('did you mean "compress"?', 1, true), err)
    err = H.raises(function() graft.save(dir .. "/x.pt", t, { ordr = { "w" } }) end)
    assert.truthy(err:find('did you mean "order"?', 1, true), err)
    err = H.raises(function() graft.open(dir .. "/x.pt", { format = "torch", strp = "m." }) end)
    assert.truthy(err:find('did you mean "strip"?', 1, true), err)
    -- nothing close: no suggestion
    err = H.raises(function() graft.save(dir .. "/x.safetensors", t, { zzzzzz = 1 }) end)
    assert.falsy(err:find("did you mean", 1, true), err)
    assert.are.same({}, H.ls(dir))
  end)

  it("an unknown format name is an error listing the known ones", function()
    local err = H.raises(function() graft.open("/nonexistent", { format = "safetensor" }) end)
    assert.truthy(err:find('^graft: open /nonexistent: unknown format "safetensor"; '
      .. 'did you mean "safetensors"%? %(known: npy, npz, '), err)
    err = H.raises(function() graft.save("/nonexistent/x", { w = graft.tensor({ 1 }) },
      { format = "bogus" }) end)
    assert.truthy(err:find('^graft: save /nonexistent/x: unknown format "bogus" %(known: '), err)
  end)

  it("a format that is not written says so and lists the writable ones", function()
    local dir = H.tmpdir()
    -- (.keras, the example here before, is written since issue 14 item 6)
    local err = H.raises(function() graft.save(dir .. "/m.pkl", { w = graft.tensor({ 1 }) },
      { format = "pickle" }) end)
    assert.truthy(err:find("^graft: save " .. escape(dir) .. "/m.pkl: format pickle cannot be "
      .. "written %(writable: npy, npz, "), err)
    assert.are.same({}, H.ls(dir))
  end)

  it("every option that worked before still works", function()
    local dir = H.tmpdir()
    local t = { ["d/w"] = graft.tensor({ { 1, 2 } }), ["d/b"] = graft.tensor({ 3 }) }
    local seen = 0
    local progress = function() seen = seen + 1 end
    graft.save(dir .. "/a.safetensors", t, { dtype = "float16", order = { "d/w" }, progress = progress,
      metadata = { k = "v" }, max_shard_size = "1GB", format = "safetensors" })
    graft.save(dir .. "/a.npz", t, { compress = true, progress = progress })
    graft.save(dir .. "/a.pt", { model = t, epoch = 3 }, { dtype = "float64", progress = progress })
    graft.save(dir .. "/a.h5", t, { strings = "fixed", layer_names = { "d", "empty" },
      backend = "tensorflow", keras_version = "2.9.0", top_level_model_weights = false,
      regroup = true })
    graft.save(dir .. "/a.weights.h5", t, { model_name = "m", regroup = true })
    graft.save(dir .. "/a.hdf5", t, { plain = true })
    graft.save(dir .. "/ck", t, { format = "tf", num_shards = 2, checkpoint_state = false })
    graft.save(dir .. "/ck2", t, { format = "tf", shards = { ["d/w"] = 1 } })
    assert.truthy(seen > 0)
    assert.are.equal("v", graft.meta(graft.open(dir .. "/a.safetensors")).__metadata__.k)
    assert.are.equal("float16", graft.open(dir .. "/a.safetensors")["d/w"].dtype)
    local m = graft.open(dir .. "/a.pt", { select = "model", strip = "d/" })
    assert.are.same({ "b", "w" }, graft.names(m))
    assert.are.equal("float64", m.w.dtype)
    assert.are.equal(2, graft.meta(graft.open(dir .. "/ck")).num_shards)
    assert.is_true(graft.open(dir .. "/a.h5")["d/w"]:equal(t["d/w"]))
  end)
end)
