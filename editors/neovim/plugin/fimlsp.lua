-- Commands for fimlsp; nothing starts until require('fimlsp').setup() is called (see :h fimlsp).
if vim.g.loaded_fimlsp then
  return
end
vim.g.loaded_fimlsp = true

local function cmd(name, fn, desc)
  vim.api.nvim_create_user_command(name, fn, { desc = desc })
end

cmd('FimlspEnable', function()
  require('fimlsp').enable()
end, 'fimlsp: show suggestions (starts the server if needed)')
cmd('FimlspDisable', function()
  require('fimlsp').disable()
end, 'fimlsp: stop showing suggestions')
cmd('FimlspToggle', function()
  require('fimlsp').toggle()
end, 'fimlsp: toggle suggestions')
cmd('FimlspStatus', function()
  require('fimlsp').show_status()
end, 'fimlsp: model state, client and server counters')
cmd('FimlspRestart', function()
  require('fimlsp').stop(true)
end, 'fimlsp: restart the server')
cmd('FimlspNextEdit', function()
  require('fimlsp').next_edit()
end, 'fimlsp: ask for the next edit at the cursor (shown as a diff preview)')
cmd('FimlspNextEditJump', function()
  require('fimlsp').next_edit_jump()
end, 'fimlsp: move the cursor to the next edit shown')
cmd('FimlspNextEditApply', function()
  require('fimlsp').next_edit_apply()
end, 'fimlsp: apply the next edit shown')
cmd('FimlspNextEditDismiss', function()
  require('fimlsp').next_edit_dismiss()
end, 'fimlsp: hide the next edit shown')
