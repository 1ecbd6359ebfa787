-- graft.progress: the save option `progress` as the function writers call
-- with (bytes done, bytes total).

local core = require "graft.core"

local M = {}

-- A bar on stderr, or nil when stderr is not a terminal.
function M.bar(label)
  if not core.isatty(2) then return nil end
  local last = -1
  return function(done, total)
    local pct = total > 0 and math.floor(done * 100 / total) or 100
    if pct == last then return end
    last = pct
    local width = 30
    local fill = math.floor(pct * width / 100)
    io.stderr:write(string.format("\r%s [%s%s] %3d%% %.1f/%.1f MiB", label,
      string.rep("#", fill), string.rep(".", width - fill), pct,
      done / 2^20, total / 2^20))
    if done >= total then io.stderr:write("\n") end
  end
end

-- opts.progress: a function is called as given; true draws a bar labelled
-- with the file name of `path`.
function M.fn(opts, path)
  if type(opts.progress) == "function" then return opts.progress end
  if opts.progress then return M.bar(path:match("[^/]*$")) end
  return nil
end

return M
