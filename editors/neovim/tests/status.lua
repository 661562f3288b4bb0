-- :FimlspStatus and :checkhealth fimlsp against a running server
-- (tests/editors/test_neovim.py::test_status_and_health_show_server_version_model_device):
-- both must say the plugin's and the server's version, the model, the device and the
-- quantization. Config: { plugin_dir, cmd, server, file, result }.
local H = dofile(vim.fn.fnamemodify(debug.getinfo(1, 'S').source:sub(2), ':h') .. '/harness.lua')
local results = H.results

H.run(function()
  local notes = {}
  vim.notify = function(msg)
    table.insert(notes, msg)
  end
  local fimlsp = require('fimlsp')
  fimlsp.setup({ cmd = H.cfg.cmd, server = H.cfg.server })
  vim.cmd('edit ' .. vim.fn.fnameescape(H.cfg.file))
  results.state = H.wait_until(function()
    return (fimlsp.state == 'ready' or fimlsp.state == 'failed') and fimlsp.state
  end, 30000, 'model ready') or fimlsp.state
  fimlsp.show_status()
  results.status = H.wait_until(function()
    return notes[1]
  end, 5000, ':FimlspStatus') or vim.NIL
  vim.cmd('checkhealth fimlsp')
  results.health = table.concat(vim.api.nvim_buf_get_lines(0, 0, -1, false), '\n')
end)
