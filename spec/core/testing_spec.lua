-- graft.core.testing: every test-only hook lives there, none beside the API.
local graft = require "graft"
local H = require "helper"

local HOOKS = {
  "cast_force_scalar", "copy_force_scalar", "cast_paths",
  "crc32c", "crc32c_mask", "crc32c_unmask", "crc32c_force_table", "crc32c_path",
  "tftable_build", "tftable_read", "tf_slice_key", "zip64_at", "max_bytes",
}

describe("core.testing", function()
  it("holds every test hook, and the module top level none of them", function()
    local core = graft.core
    assert.is_table(core.testing)
    for _, name in ipairs(HOOKS) do
      assert.is_function(core.testing[name], name)
      assert.is_nil(rawget(core, name), name)
    end
  end)

  it("zip64_at refuses negative thresholds", function()
    assert.matches("must be >= 0", H.raises(function() graft.core.testing.zip64_at(-1) end))
    assert.matches("must be >= 0", H.raises(function() graft.core.testing.zip64_at(1, -1) end))
    graft.core.testing.zip64_at(0, 0)
  end)
end)
