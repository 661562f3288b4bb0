-- The editor's definitions (tests/editors/test_neovim.py::test_editor_definitions): a second
-- language server (tests/editors/definition_server.py, a stand-in answering
-- textDocument/definition) is attached beside fimlsp; entering insert mode at the end of a line
-- makes the plugin ask it for the identifiers before the cursor, and send what it answers to
-- fimlsp (fimlsp.context); fimlsp.prompt at the cursor then holds the definition. One name is
-- never answered: the lookup gives up on it after its timeout and sends the rest.
-- Config: { plugin_dir, cmd, server, standin (command), file, result }.
local H = dofile(vim.fn.fnamemodify(debug.getinfo(1, 'S').source:sub(2), ':h') .. '/harness.lua')
local api = vim.api
local results = H.results

local function prompt(fimlsp)
  local client = fimlsp.client(0)
  local params = vim.lsp.util.make_position_params(0, client.offset_encoding)
  local got
  require('fimlsp.compat').request(client, 'workspace/executeCommand',
    { command = 'fimlsp.prompt', arguments = { params.textDocument.uri, params.position } },
    function(err, result)
      got = { err = err, result = result }
    end)
  return H.wait_until(function()
    return got
  end, 30000, 'fimlsp.prompt')
end

H.run(function()
  local fimlsp = require('fimlsp')
  local definitions = require('fimlsp.definitions')
  fimlsp.setup({ cmd = H.cfg.cmd, server = H.cfg.server, auto_trigger = false,
                 editor_definitions = { enabled = true, timeout_ms = 500 } })
  vim.cmd('edit ' .. vim.fn.fnameescape(H.cfg.file))
  local standin = { name = 'standin', cmd = H.cfg.standin, root_dir = vim.fn.getcwd() }
  local id
  if vim.lsp.start then
    id = vim.lsp.start(standin, { bufnr = 0 })
  else
    id = vim.lsp.start_client(standin)
    vim.lsp.buf_attach_client(0, id)
  end
  results.state = H.wait_until(function()
    return fimlsp.state == 'ready' and fimlsp.state
  end, 60000, 'model ready') or fimlsp.state
  H.wait_until(function()
    local client = vim.lsp.get_client_by_id(id)
    return client and client.server_capabilities and client.server_capabilities.definitionProvider
  end, 20000, 'the stand-in server initialized')

  -- Typing on the last line: A (InsertEnter) looks the names up.
  api.nvim_win_set_cursor(0, { api.nvim_buf_line_count(0), 0 })
  H.type('A')
  results.sent = H.wait_until(function()
    return definitions.counters.sent >= 1 and definitions.counters.sent
  end, 20000, 'fimlsp.context sent') or 0
  results.counters = vim.deepcopy(definitions.counters)
  local got = prompt(fimlsp) or {}
  results.prompt_error = got.err and tostring(got.err.message or got.err) or vim.NIL
  results.prompt = got.result and got.result.text or vim.NIL
  results.snippets = got.result and got.result.snippets or vim.NIL

  -- Typing the word after the names changes none of them: no new lookup.
  H.type('width')
  results.lookups_after_typing = definitions.counters.lookups
  results.line = api.nvim_get_current_line()
  results.status_definitions = fimlsp.status().definitions
end)
