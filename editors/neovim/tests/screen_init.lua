-- init.lua for the tmux screen test (tests/editors/test_neovim.py): the plugin as a user would
-- set it up, plus a statusline that says when the model is ready. Config from the JSON file
-- named by FIMLSP_TEST_CONFIG: { plugin_dir, cmd, server }.
local cfg = vim.fn.json_decode(table.concat(vim.fn.readfile(os.getenv('FIMLSP_TEST_CONFIG')), '\n'))
vim.opt.runtimepath:prepend(cfg.plugin_dir)
vim.o.swapfile = false
vim.o.wrap = false
vim.o.laststatus = 2
-- A terminal without 'termguicolors' (Neovim 0.10+ turns it on by itself where the terminal says
-- it has true colour): the ghost text must still look different from typed text.
vim.o.termguicolors = false
vim.o.statusline = "%f %{v:lua.require'fimlsp'.statusline()}"
require('fimlsp').setup({ cmd = cfg.cmd, server = cfg.server })
