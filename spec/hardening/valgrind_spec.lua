-- valgrind memcheck over a representative subset (issue 13): one real file
-- of each family opened, fully read, cast, viewed and written back in every
-- writable format (spec/fixtures/memcheck.lua). 0 errors, 0 bytes
-- definitely lost; the sandboxed libhdf5 children are checked too (valgrind
-- follows fork).
local H = require "helper"

describe("valgrind memcheck", function()
  after_each(H.cleanup)

  it("a subset of every format's read and write paths: no errors, no leaks", function()
    H.real("MANIFEST.md")
    local dir = H.tmpdir()
    local cmd
    if (os.getenv("LD_PRELOAD") or ""):find("asan") then
      -- make asan: valgrind cannot run a sanitizer build; the same subset
      -- runs under AddressSanitizer with its leak checker instead.
      cmd = "ASAN_OPTIONS=detect_leaks=1:exitcode=3 lua5.4 spec/fixtures/memcheck.lua "
        .. H.q(H.REAL) .. " " .. H.q(dir) .. " 2>&1; echo \"exit $?\""
    else
      assert.is_true(os.execute("command -v valgrind >/dev/null"),
        "valgrind is not installed (tools/install-deps --test installs it)")
      cmd = "valgrind --error-exitcode=3 --leak-check=full --errors-for-leak-kinds=definite "
        .. "--show-leak-kinds=definite -q lua5.4 spec/fixtures/memcheck.lua "
        .. H.q(H.REAL) .. " " .. H.q(dir) .. " 2>&1; echo \"exit $?\""
    end
    local out = io.popen("sh -c " .. H.q(cmd)):read("a")
    -- valgrind's own notices about the host (e.g. Debian 13's "connection to
    -- image ... failed / no debug info loaded") are not findings: errors and
    -- leaks are reported as other lines and through the exit status.
    out = out:gsub("==%d+== warning:[^\n]*\n", ""):gsub("==%d+==%s%s+[^\n]*\n", "")
    assert.matches("memcheck subset done\nexit 0\n$", out)
  end)
end)
