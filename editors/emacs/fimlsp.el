;;; fimlsp.el --- Ghost-text completions from a local FIM model  -*- lexical-binding: t; -*-

;; Copyright (C) 2026 The fimlsp authors

;; Author: The fimlsp authors
;; Maintainer: The fimlsp authors
;; Version: 0.1.0
;; Package-Requires: ((emacs "28.1") (jsonrpc "1.0.14"))
;; Keywords: convenience, tools
;; URL: https://github.com/fimlsp/fimlsp
;; SPDX-License-Identifier: Apache-2.0

;; This file is not part of GNU Emacs.  It is part of fimlsp, licensed
;; under the Apache License, Version 2.0.

;;; Commentary:

;; Emacs client of fimlsp, a language server that answers LSP 3.18
;; `textDocument/inlineCompletion' (Copilot-style ghost text) from a
;; fill-in-the-middle model running on your own machine.
;;
;; fimlsp is a completion provider, not a language server for a
;; language: it runs *beside* the language server you use (eglot's
;; pyright, rust-analyzer, gopls, ... or lsp-mode's), over its own
;; `jsonrpc' connection.  One fimlsp process serves every buffer (it
;; holds the model, the expensive part).  This package keeps the server's
;; copy of each buffer in sync (incremental `didChange'), sends
;; `textDocument/inlineCompletion' after `fimlsp-idle-delay' seconds of
;; idleness following an edit, cancels requests that went stale (with
;; `$/cancelRequest'), and draws the suggestion as an overlay after point.
;;
;; Setup:
;;
;;   (require 'fimlsp)
;;   (setq fimlsp-model "starcoderbase-1b")
;;   (global-fimlsp-mode 1)   ; `fimlsp-mode' in `fimlsp-major-modes' buffers
;;
;; or with use-package (Emacs 30):
;;
;;   (use-package fimlsp
;;     :vc (:url "https://github.com/fimlsp/fimlsp" :lisp-dir "editors/emacs")
;;     :custom (fimlsp-model "starcoderbase-1b")
;;     :config (global-fimlsp-mode 1))
;;
;; While a suggestion is shown: TAB accepts it, C-<right> / M-<right>
;; accepts its next line, C-g dismisses it; moving point or typing
;; something it does not predict dismisses it too.  `fimlsp-complete'
;; (C-c ] in `fimlsp-mode') asks for a suggestion now.  For classic
;; completion from the model, add `fimlsp-completion-at-point' to
;; `completion-at-point-functions'.

;;; Code:

(require 'cl-lib)
(require 'subr-x)
(require 'jsonrpc)
(require 'url-util)

(defconst fimlsp-version "0.1.0"
  "Version of fimlsp.el (the fimlsp release it belongs to).")

;;;; Options

(defgroup fimlsp nil
  "Inline completions from a local fill-in-the-middle model (fimlsp server)."
  :group 'tools
  :prefix "fimlsp-")

;; How the server is started.

(defcustom fimlsp-server-command '("fimlsp" "serve")
  "Program and arguments that start the fimlsp language server on stdio.
Default: (\"fimlsp\" \"serve\").  Server options may be given here as
command-line flags (e.g. \"--model\" \"starcoderbase-1b\"); those set in
the options below are sent as `initializationOptions' and win over flags."
  :type '(repeat string))

(defcustom fimlsp-major-modes
  '(python-mode python-ts-mode
    js-mode js-ts-mode js2-mode typescript-mode typescript-ts-mode tsx-ts-mode
    c-mode c-ts-mode c++-mode c++-ts-mode java-mode java-ts-mode
    csharp-mode csharp-ts-mode go-mode go-ts-mode rust-mode rust-ts-mode
    ruby-mode ruby-ts-mode php-mode lua-mode sh-mode bash-ts-mode
    kotlin-mode scala-mode swift-mode haskell-mode)
  "Major modes in which `global-fimlsp-mode' turns on `fimlsp-mode'.
Modes derived from these count too.  Default: common programming modes,
tree-sitter variants included."
  :type '(repeat symbol))

;; Server options, sent as `initializationOptions'.  nil means "not sent":
;; the server's default (shown in brackets) or the command-line flag applies.

(defcustom fimlsp-model nil
  "Model: a preset name, a Hugging Face hub id or a local directory.
nil: not sent [server default \"tiny-starcoder\", or --model]."
  :type '(choice (const :tag "Server default" nil) string))

(defcustom fimlsp-template nil
  "FIM family of a model the presets do not know, e.g. \"starcoder\".
nil: not sent [from the preset or tokenizer]."
  :type '(choice (const :tag "Server default" nil) string))

(defcustom fimlsp-device nil
  "Device the model runs on.  nil: not sent [\"auto\": CUDA if present]."
  :type '(choice (const :tag "Server default" nil)
                 (const "auto") (const "cpu") (const "cuda") (const "mps")))

(defcustom fimlsp-dtype nil
  "Weights' dtype.  nil: not sent [\"auto\": fp32 on CPU, bf16 on CUDA]."
  :type '(choice (const :tag "Server default" nil) (const "auto")
                 (const "float32") (const "float16") (const "bfloat16")))

(defcustom fimlsp-quantization nil
  "Quantization.  nil: not sent [\"auto\": the preset's choice per device].
\"int8\" is for CPUs; \"8bit\" and \"4bit\" need CUDA and bitsandbytes."
  :type '(choice (const :tag "Server default" nil) (const "auto") (const "none")
                 (const "int8") (const "8bit") (const "4bit")))

(defcustom fimlsp-threads nil
  "CPU threads for the model.  nil: not sent [torch's default]."
  :type '(choice (const :tag "Server default" nil) integer))

(defcustom fimlsp-max-new-tokens nil
  "Longest suggestion, in tokens.
nil: not sent; the server uses 32 on the CPU, else 64."
  :type '(choice (const :tag "Server default" nil) integer))

(defcustom fimlsp-context-window nil
  "Shrink the model's context window to this many tokens.
nil: not sent [the model's own window]."
  :type '(choice (const :tag "Server default" nil) integer))

(defcustom fimlsp-temperature nil
  "Sampling temperature; 0 is greedy and reproducible.  nil: not sent [0]."
  :type '(choice (const :tag "Server default" nil) number))

(defcustom fimlsp-top-p nil
  "Nucleus sampling threshold.  nil: not sent [1]."
  :type '(choice (const :tag "Server default" nil) number))

(defcustom fimlsp-time-budget-ms nil
  "Stop generating after this many milliseconds.  nil: not sent [4000]."
  :type '(choice (const :tag "Server default" nil) integer))

(defcustom fimlsp-multiline nil
  "When a suggestion may span several lines.
nil: not sent [\"auto\": a block after `:' or `{', or on an empty line]."
  :type '(choice (const :tag "Server default" nil)
                 (const "auto") (const "always") (const "never")))

(defcustom fimlsp-log-level nil
  "Server log level on its stderr.
\"debug\" also sends the server's other log lines to the *fimlsp events*
buffer, which gets each request's log line at any level.
nil: not sent [\"info\"]."
  :type '(choice (const :tag "Server default" nil) (const "error")
                 (const "warning") (const "info") (const "debug")))

(defcustom fimlsp-engine nil
  "Where the model runs: in the server process, or a serving engine.
\"openai\" is vLLM (or another OpenAI-compatible /v1/completions that
takes token ids), \"llamacpp\" llama.cpp's llama-server, \"tgi\" and
\"ollama\" take text prompts (docs/deploy.md).  `fimlsp-model' still
gives the tokenizer, FIM template and window.
nil: not sent [server default \"local\"]."
  :type '(choice (const :tag "Server default" nil) (const "local")
                 (const "openai") (const "llamacpp") (const "tgi") (const "ollama")))

(defcustom fimlsp-endpoint nil
  "The serving engine's base URL, e.g. \"http://gpu-box:8000/v1\".
No credentials in it: see `fimlsp-api-key-env'.
nil: not sent [the engine's usual local address]."
  :type '(choice (const :tag "Server default" nil) string))

(defcustom fimlsp-served-model nil
  "The serving engine's name for the model, when it serves several.
nil: not sent [the one it serves]."
  :type '(choice (const :tag "Server default" nil) string))

(defcustom fimlsp-api-key-env nil
  "Name of the environment variable that holds the engine's API key.
The variable is read in the server's environment (set it with
`process-environment' or before starting Emacs); the key itself is
never an option and never logged.  nil: not sent [no key]."
  :type '(choice (const :tag "Server default" nil) string))

(defcustom fimlsp-extra-options nil
  "More server options, a plist such as (:contextWindow 2048).
Booleans are t or :json-false, e.g. (:tlsVerify :json-false)
for a self-signed certificate on a network you trust.
Merged after the options above.  Default: nil."
  :type 'plist)

;; Client behaviour.

(defcustom fimlsp-idle-delay 0.3
  "Seconds of idleness after an edit before a suggestion is requested.
Default: 0.3."
  :type 'number)

(defcustom fimlsp-auto-trigger t
  "Non-nil: ask for a suggestion after each edit (once idle).
nil: only when `fimlsp-complete' is called.  Default: t."
  :type 'boolean)

(defcustom fimlsp-warm t
  "Non-nil: prefill the prompt where point rests, while the model is idle.
After `fimlsp-warm-delay' seconds of idleness with point moved (not
after an edit, which asks for a suggestion instead), the server is sent
`fimlsp.warm' with point, so the first keystroke there costs one token
instead of the whole window.  Any real request stops it.  Default: t."
  :type 'boolean)

(defcustom fimlsp-warm-delay 0.5
  "Seconds point must rest before a warm start is asked for.  Default: 0.5."
  :type 'number)

(defcustom fimlsp-editor-definitions t
  "Non-nil: send the server the definitions eglot's server knows near point.
Where eglot manages the buffer, the identifiers before point (those of
point's line, the word being typed left out, and the two lines above;
six at most) are looked up with `textDocument/definition' on eglot's
connection, in the background, whenever they change; the definitions
found in other files are sent to fimlsp (`fimlsp.context'), which puts
them first among the prompt's snippets: a library's signature, or a
function of a file that is not open.  They apply from the next request.
Default: t."
  :type 'boolean)

(defcustom fimlsp-editor-definitions-timeout 2
  "Seconds after which a definition lookup is given up.  Default: 2.
A lookup waits until eglot has sent its server the latest changes, which
eglot does once Emacs is idle (`eglot-send-changes-idle-time')."
  :type 'number)

(defcustom fimlsp-next-edit-auto t
  "Non-nil: ask for the next edit by itself.
After `fimlsp-next-edit-delay' seconds of idleness following a change,
and after a suggestion is accepted, `fimlsp-next-edit' is asked at point
\(it needs a next-edit model on the server; with another model the
server answers with none).  nil: only when `fimlsp-next-edit' is called.
Default: t."
  :type 'boolean)

(defcustom fimlsp-next-edit-delay 0.75
  "Seconds of idleness after a change before the next edit is asked for.
Longer than `fimlsp-idle-delay': a rewrite of the region around point
costs the model more than a suggestion.  Default: 0.75."
  :type 'number)

(defcustom fimlsp-request-timeout 15
  "Seconds after which an unanswered request is given up.  Default: 15."
  :type 'number)

(defface fimlsp-ghost-face
  '((t :inherit shadow))
  "Face of the suggestion (ghost text) shown after point.")

(defface fimlsp-next-edit-delete-face
  '((((class color) (background dark)) :background "#5f2f2f" :strike-through t)
    (((class color)) :background "#ffdddd" :strike-through t)
    (t :strike-through t))
  "Face of the text a next edit would replace.")

(defface fimlsp-next-edit-add-face
  '((((class color) (background dark)) :background "#2f5f2f")
    (((class color)) :background "#ddffdd")
    (t :underline t))
  "Face of the text a next edit would put in its place.")

;;;; State

(defvar fimlsp-mode)
(defvar fimlsp--connection nil
  "The connection to the fimlsp server, shared by every buffer, or nil.")
(defvar fimlsp--start-error nil
  "Why the server could not be started, until `fimlsp-restart'; or nil.")
(defvar fimlsp--state nil
  "The server's state, for the mode line.
nil (not running), `starting', `loading', `ready' or `error' (from the
server's work-done progress).")

(defvar-local fimlsp--overlay nil "Overlay showing the ghost text, or nil.")
(defvar-local fimlsp--item nil
  "The suggestion shown, a plist.
Its keys are :text :start :end-offset :command :accepted :choices
:index.  :text is the item's insertText, :start a marker where it begins (the
range's start), :end-offset how many characters after the request's
point the range replaced, :accepted how many characters of :text were
taken with `fimlsp-accept-line' or `fimlsp-accept-word' so far,
:choices the answer's usable items (the first answer, then its
alternatives) and :index the position of this one among them.")
(defvar-local fimlsp--pending nil
  "The request in flight: plist (:gen :id :connection :tick :point), or nil.")
(defvar-local fimlsp--generation 0 "Counter that tells requests apart.")
(defvar-local fimlsp--timer nil "Idle timer of the next automatic request.")
(defvar-local fimlsp--warm-timer nil "Idle timer of the next warm start.")
(defvar-local fimlsp--next-edit-timer nil "Idle timer of the next automatic next edit.")
(defvar-local fimlsp--last-tick nil "`buffer-chars-modified-tick' seen last.")
(defvar-local fimlsp--last-point nil "Point seen last by `post-command-hook'.")
(defvar-local fimlsp--suggestion-shown nil
  "Non-nil while ghost text is shown; activates `fimlsp-suggestion-map'.")

;; The server's copy of the buffer.
(defvar-local fimlsp--next-edit nil
  "The next edit on show: plist :edit, :version, :overlays; or nil.")
(defvar-local fimlsp-next-edit-last nil
  "The last `textDocument/copilotInlineEdit' answer for this buffer.")
(defvar-local fimlsp--opened nil
  "The connection this buffer was opened on (`didOpen'), or nil.")
(defvar-local fimlsp--uri nil "The buffer's URI, as sent in `didOpen'.")
(defvar-local fimlsp--doc-version 0 "Version of the buffer's text sent last.")
(defvar-local fimlsp--changes nil
  "Changes not sent yet, newest first, or :full to send the whole text.")
(defvar-local fimlsp--before-change nil
  "(BEG END START END) seen by `before-change-functions'.
START and END are LSP positions of BEG and END before the change.")

(defvar-local fimlsp-counters nil
  "Plist of counters, for tests and curiosity:
:sent :answered :stale :cancelled :errors :shown :accepted :partial,
and for `fimlsp-editor-definitions' :definition-lookups,
:definitions-sent and :definition-timeouts.")
(defvar-local fimlsp--definitions-key nil
  "The identifiers near point looked up last, joined by spaces.")
(defvar-local fimlsp--definitions-generation 0
  "Counter that tells definition lookups apart.")

(defun fimlsp--count (key)
  "Add one to counter KEY of `fimlsp-counters'."
  (setq fimlsp-counters
        (plist-put fimlsp-counters key (1+ (or (plist-get fimlsp-counters key) 0)))))

;;;; Server options

(defun fimlsp-initialization-options ()
  "The server options set in the `fimlsp' group, as a JSON plist."
  (let ((options
         (cl-loop for (key . var) in '((:model . fimlsp-model)
                                       (:template . fimlsp-template)
                                       (:device . fimlsp-device)
                                       (:dtype . fimlsp-dtype)
                                       (:quantization . fimlsp-quantization)
                                       (:threads . fimlsp-threads)
                                       (:maxNewTokens . fimlsp-max-new-tokens)
                                       (:contextWindow . fimlsp-context-window)
                                       (:temperature . fimlsp-temperature)
                                       (:topP . fimlsp-top-p)
                                       (:timeBudgetMs . fimlsp-time-budget-ms)
                                       (:multiline . fimlsp-multiline)
                                       (:logLevel . fimlsp-log-level)
                                       (:engine . fimlsp-engine)
                                       (:endpoint . fimlsp-endpoint)
                                       (:servedModel . fimlsp-served-model)
                                       (:apiKeyEnv . fimlsp-api-key-env))
                  for value = (symbol-value var)
                  when value append (list key value))))
    (append options fimlsp-extra-options)))

(defun fimlsp--json-options ()
  "`fimlsp-initialization-options', or an empty JSON object."
  (or (fimlsp-initialization-options) (make-hash-table)))

;;;; The connection

(defclass fimlsp-jsonrpc-connection (jsonrpc-process-connection)
  ((capabilities
    :initform nil :accessor fimlsp-connection-capabilities
    :documentation "The server's capabilities, once initialized.")
   (encoding
    :initform "utf-16" :accessor fimlsp-connection-encoding
    :documentation "Position encoding the server chose.")
   (ready
    :initform nil :accessor fimlsp-connection-ready
    :documentation "Non-nil once `initialized' was sent.")
   (last-request-id
    :initform nil :accessor fimlsp-connection-last-request-id
    :documentation "Id of the request sent last (for `$/cancelRequest')."))
  "A JSON-RPC connection to the fimlsp server.
It is fimlsp's own, beside whatever connection eglot or lsp-mode has
to the buffer's language server.")

(cl-defmethod jsonrpc-connection-send :after ((connection fimlsp-jsonrpc-connection)
                                              &rest args &key id method
                                              &allow-other-keys)
  "Remember the ID of a request sent on CONNECTION, to cancel it later.
A request is a message with both an ID and a METHOD; `jsonrpc' keeps
the id of an asynchronous request to itself.  ARGS are the message's."
  (ignore args)
  (when (and id method)
    (setf (fimlsp-connection-last-request-id connection) id)))

(defun fimlsp-connection ()
  "The connection to the fimlsp server if it is running and initialized."
  (and fimlsp--connection
       (jsonrpc-running-p fimlsp--connection)
       (fimlsp-connection-ready fimlsp--connection)
       fimlsp--connection))

(defun fimlsp--client-capabilities ()
  "What this client can do, for `initialize'."
  (list :general (list :positionEncodings ["utf-32" "utf-16" "utf-8"])
        :textDocument (list :synchronization (list :dynamicRegistration :json-false
                                                   :didSave :json-false)
                            :inlineCompletion (list :dynamicRegistration :json-false)
                            :completion (list :completionItem
                                              (list :snippetSupport :json-false)))
        :window (list :workDoneProgress t :showMessage (make-hash-table))
        :workspace (list :configuration t
                         :didChangeConfiguration (list :dynamicRegistration :json-false))))

(defun fimlsp--start ()
  "Start the server and initialize it without waiting; return the connection.
Buffers in `fimlsp-mode' are opened on it once it is initialized."
  (setq fimlsp--start-error nil)
  (let* ((name "fimlsp")
         (process
          (condition-case error
              (make-process :name name :command fimlsp-server-command
                            :connection-type 'pipe :coding 'utf-8-emacs-unix
                            :noquery t
                            :stderr (get-buffer-create (format "*%s stderr*" name)))
            (error
             (setq fimlsp--start-error
                   (format "cannot start %s: %s"
                           (mapconcat #'identity fimlsp-server-command " ")
                           (error-message-string error)))
             (message "fimlsp: %s (set `fimlsp-server-command')" fimlsp--start-error)
             (fimlsp--set-state 'error)
             nil)))
         (connection
          (and process
               (make-instance 'fimlsp-jsonrpc-connection
                              :name name :process process
                              :request-dispatcher #'fimlsp--handle-request
                              :notification-dispatcher #'fimlsp--handle-notification
                              :on-shutdown #'fimlsp--on-shutdown))))
    (when connection
      (setq fimlsp--connection connection)
      (fimlsp--set-state 'starting)
      (jsonrpc-async-request
       connection :initialize
       (list :processId (emacs-pid)
             :clientInfo (list :name "fimlsp.el" :version fimlsp-version)
             :rootUri nil
             :capabilities (fimlsp--client-capabilities)
             :initializationOptions (fimlsp--json-options))
       :success-fn (lambda (result) (fimlsp--initialized connection result))
       :error-fn (lambda (error)
                   (message "fimlsp: initialize failed: %s" (plist-get error :message)))
       :timeout 60))
    connection))

(defun fimlsp--initialized (connection result)
  "Finish starting CONNECTION with the `initialize' RESULT; open the buffers."
  (let ((capabilities (plist-get result :capabilities)))
    (setf (fimlsp-connection-capabilities connection) capabilities
          (fimlsp-connection-encoding connection)
          (or (plist-get capabilities :positionEncoding) "utf-16"))
    (jsonrpc-notify connection :initialized (make-hash-table))
    (setf (fimlsp-connection-ready connection) t)
    (dolist (buffer (buffer-list))
      (with-current-buffer buffer
        (when fimlsp-mode (fimlsp--open))))))

(defun fimlsp--ensure-connection ()
  "The server's connection, started if it is not running (and may start)."
  (or (and fimlsp--connection (jsonrpc-running-p fimlsp--connection) fimlsp--connection)
      (and (not fimlsp--start-error) (fimlsp--start))))

(defun fimlsp--on-shutdown (connection)
  "CONNECTION's process ended: forget it in every buffer."
  (when (eq connection fimlsp--connection)
    (setq fimlsp--connection nil)
    (fimlsp--set-state nil))
  (dolist (buffer (buffer-list))
    (with-current-buffer buffer
      (when (eq fimlsp--opened connection)
        (fimlsp--clear)
        (setq fimlsp--opened nil fimlsp--pending nil fimlsp--changes nil)))))

(defun fimlsp--handle-request (_connection method params)
  "Answer the server's request METHOD with PARAMS."
  (pcase method
    ('workspace/configuration
     (vconcat (mapcar (lambda (item)
                        (if (equal (plist-get item :section) "fimlsp")
                            (fimlsp--json-options)
                          nil))
                      (plist-get params :items))))
    ((or 'window/workDoneProgress/create 'client/registerCapability
         'client/unregisterCapability)
     nil)
    ('window/showMessageRequest
     (message "fimlsp: %s" (plist-get params :message))
     nil)
    (_ (jsonrpc-error :code -32601 :message (format "%s not supported" method)))))

(defun fimlsp--handle-notification (_connection method params)
  "Handle the server's notification METHOD with PARAMS."
  (pcase method
    ('window/showMessage
     (when (<= (or (plist-get params :type) 4) 2)
       (message "fimlsp: %s" (plist-get params :message))))
    ('$/progress
     ;; The model load: begin/report while loading, end with "ready" or "failed".
     (let ((value (plist-get params :value)))
       (fimlsp--set-state
        (if (equal (plist-get value :kind) "end")
            (if (equal (plist-get value :message) "ready") 'ready 'error)
          'loading))))))

(defvar fimlsp-mode-line '(:eval (fimlsp--lighter))
  "The mode line's lighter of `fimlsp-mode': FIM and the server's state.")
(put 'fimlsp-mode-line 'risky-local-variable t)

(defun fimlsp--set-state (state)
  "Show STATE in the mode line of every buffer."
  (unless (eq state fimlsp--state)
    (setq fimlsp--state state)
    (force-mode-line-update t)))

(defun fimlsp--lighter ()
  "The mode line's word for the server's state."
  (pcase fimlsp--state
    ('ready " FIM")
    ('loading " FIM[loading]")
    ('starting " FIM[starting]")
    ('error " FIM[error]")
    (_ (if fimlsp--start-error " FIM[error]" " FIM[off]"))))

(defun fimlsp-shutdown ()
  "Stop the fimlsp server (`shutdown', then `exit').
It starts again with the next buffer in `fimlsp-mode'."
  (interactive)
  (let ((connection fimlsp--connection))
    (setq fimlsp--connection nil)
    (when (and connection (jsonrpc-running-p connection))
      (ignore-errors (jsonrpc-request connection :shutdown nil :timeout 5))
      (ignore-errors (jsonrpc-notify connection :exit nil))
      (let ((deadline (+ (float-time) 5)))
        (while (and (jsonrpc-running-p connection) (< (float-time) deadline))
          (accept-process-output nil 0.05)))
      (jsonrpc-shutdown connection))))

(defun fimlsp-restart ()
  "Stop the server and start it again for the buffers in `fimlsp-mode'."
  (interactive)
  (fimlsp-shutdown)
  (setq fimlsp--start-error nil)
  (fimlsp--ensure-connection))

;;;; Positions and documents

(defun fimlsp--encoding ()
  "Position encoding of the current connection."
  (if fimlsp--connection (fimlsp-connection-encoding fimlsp--connection) "utf-16"))

(defun fimlsp--units (string &optional encoding)
  "Length of STRING in ENCODING's units (default: the connection's)."
  (pcase (or encoding (fimlsp--encoding))
    ("utf-32" (length string))
    ("utf-8" (length (encode-coding-string string 'utf-8 t)))
    (_ (+ (length string) (cl-count-if (lambda (char) (> char #xFFFF)) string)))))

(defun fimlsp--position (&optional pos)
  "LSP position of POS (default point): 0-based line and character."
  (save-excursion
    (save-restriction
      (widen)
      (when pos (goto-char pos))
      (list :line (1- (line-number-at-pos nil t))
            :character (fimlsp--units (buffer-substring-no-properties
                                       (line-beginning-position) (point)))))))

(defun fimlsp--point (position)
  "The point at LSP POSITION (clamped to its line and to the buffer)."
  (save-excursion
    (save-restriction
      (widen)
      (goto-char (point-min))
      (forward-line (plist-get position :line))
      (let ((wanted (plist-get position :character))
            (units 0))
        (while (and (< units wanted) (not (eolp)))
          (setq units (+ units (fimlsp--units (string (char-after)))))
          (forward-char 1)))
      (point))))

(defun fimlsp--buffer-uri ()
  "URI of the current buffer: its file, or an untitled: name."
  (if buffer-file-name
      (let ((path (expand-file-name buffer-file-name)))
        (concat "file://" (if (string-prefix-p "/" path) "" "/")
                (url-hexify-string path url-path-allowed-chars)))
    (concat "untitled:" (url-hexify-string (buffer-name)))))

(defconst fimlsp--language-ids
  '((c++ . "cpp") (js . "javascript") (js2 . "javascript") (tsx . "typescriptreact")
    (sh . "shellscript") (bash . "shellscript") (emacs-lisp . "lisp")
    (csharp . "csharp") (python . "python") (go . "go") (rust . "rust"))
  "LSP language ids for major mode names whose stem is not one already.")

(defun fimlsp--language-id ()
  "LSP language id of the current buffer, from its major mode."
  (let ((stem (intern (replace-regexp-in-string
                       "\\(-ts\\)?-mode\\'" "" (symbol-name major-mode)))))
    (or (alist-get stem fimlsp--language-ids) (symbol-name stem))))

(defun fimlsp--text ()
  "The whole buffer's text."
  (save-restriction (widen) (buffer-substring-no-properties (point-min) (point-max))))

(defun fimlsp--open ()
  "Send the buffer to the server (`didOpen') if it is initialized."
  (let ((connection (fimlsp-connection)))
    (when (and connection (not (eq fimlsp--opened connection)))
      (setq fimlsp--uri (fimlsp--buffer-uri)
            fimlsp--doc-version 0
            fimlsp--changes nil
            fimlsp--opened connection)
      (jsonrpc-notify connection :textDocument/didOpen
                      (list :textDocument (list :uri fimlsp--uri
                                                :languageId (fimlsp--language-id)
                                                :version fimlsp--doc-version
                                                :text (fimlsp--text)))))))

(defun fimlsp--close ()
  "Tell the server the buffer is closed (`didClose')."
  (let ((connection fimlsp--opened))
    (setq fimlsp--opened nil fimlsp--changes nil)
    (when (and connection (jsonrpc-running-p connection))
      (jsonrpc-notify connection :textDocument/didClose
                      (list :textDocument (list :uri fimlsp--uri))))))

(defun fimlsp--renamed ()
  "Reopen the buffer on the server under its new URI.
For `after-set-visited-file-name-hook'.  Requests and warm starts name
the URI it was opened under; the server would know no document under the
new one."
  (when (and fimlsp--opened (not (equal fimlsp--uri (fimlsp--buffer-uri))))
    (fimlsp--flush-changes)
    (fimlsp-dismiss)
    (fimlsp--close)
    (fimlsp--open)))

(defun fimlsp--before-change (beg end)
  "Remember where the text from BEG to END was, before the edit."
  (when fimlsp--opened
    (setq fimlsp--before-change
          (list beg end (fimlsp--position beg) (fimlsp--position end)))))

(defun fimlsp--after-change (beg end pre-change-length)
  "Record the change of BEG..END (formerly PRE-CHANGE-LENGTH long)."
  (when fimlsp--next-edit (fimlsp-next-edit-dismiss)) ; made for the text before the change
  (when fimlsp--opened
    (let ((before fimlsp--before-change))
      (setq fimlsp--before-change nil)
      (if (or (eq fimlsp--changes :full) (null before)
              (/= beg (nth 0 before)) (/= (+ beg pre-change-length) (nth 1 before))
              (> (length fimlsp--changes) 64))
          ;; Some primitives report other regions before and after a change:
          ;; send the whole text rather than a wrong edit.
          (setq fimlsp--changes :full)
        (push (list :range (list :start (nth 2 before) :end (nth 3 before))
                    :text (buffer-substring-no-properties beg end))
              fimlsp--changes)))))

(defun fimlsp--flush-changes ()
  "Send the edits not sent yet (`didChange')."
  (when (and fimlsp--changes fimlsp--opened (jsonrpc-running-p fimlsp--opened))
    (let ((changes (if (eq fimlsp--changes :full)
                       (vector (list :text (fimlsp--text)))
                     (vconcat (reverse fimlsp--changes)))))
      (setq fimlsp--changes nil)
      (jsonrpc-notify fimlsp--opened :textDocument/didChange
                      (list :textDocument (list :uri fimlsp--uri
                                                :version (cl-incf fimlsp--doc-version))
                            :contentChanges changes)))))

(defun fimlsp--async-request (connection method params success error timeout)
  "Send METHOD with PARAMS on CONNECTION without waiting; return its id.
SUCCESS or ERROR is called with the result or error object, TIMEOUT with
no arguments."
  (jsonrpc-async-request connection method params
                         :success-fn success :error-fn error
                         :timeout-fn timeout :timeout fimlsp-request-timeout)
  (fimlsp-connection-last-request-id connection))

(defun fimlsp--execute (connection command arguments)
  "Run COMMAND with ARGUMENTS (a vector) on CONNECTION; do not wait."
  (fimlsp--async-request connection :workspace/executeCommand
                         (list :command command :arguments arguments)
                         #'ignore #'ignore #'ignore))

(defun fimlsp--ready-connection ()
  "The connection, if this buffer is open on it; nil otherwise."
  (let ((connection (fimlsp-connection)))
    (when connection
      (unless (eq fimlsp--opened connection) (fimlsp--open))
      (and (eq fimlsp--opened connection) connection))))

;;;; Requests

(defun fimlsp--cancel-pending ()
  "Forget the request in flight and ask the server to stop working on it."
  (when fimlsp--pending
    (let ((id (plist-get fimlsp--pending :id))
          (connection (plist-get fimlsp--pending :connection)))
      (setq fimlsp--pending nil)
      (fimlsp--count :cancelled)
      (when (and id (jsonrpc-running-p connection))
        (jsonrpc-notify connection :$/cancelRequest (list :id id))))))

(defun fimlsp--request (trigger-kind &optional pick)
  "Ask for a suggestion at point; TRIGGER-KIND 1 is invoked, 2 automatic.
PICK: which of the answer's items to show (cycling), 1 when nil.
Returns non-nil if a request was sent."
  (let ((connection (fimlsp--ready-connection)))
    (when connection
      (fimlsp--cancel-pending)
      (fimlsp--flush-changes)
      (let* ((buffer (current-buffer))
             (gen (cl-incf fimlsp--generation))
             (tick (buffer-chars-modified-tick))
             (point (point))
             (params (list :textDocument (list :uri fimlsp--uri)
                           :position (fimlsp--position)
                           :context (list :triggerKind trigger-kind)))
             (mine-p (lambda ()
                       (and (buffer-live-p buffer)
                            (with-current-buffer buffer
                              (eq gen (plist-get fimlsp--pending :gen))))))
             (stale (lambda ()
                      (when (buffer-live-p buffer)
                        (with-current-buffer buffer (fimlsp--count :stale)))))
             (id (fimlsp--async-request
                  connection :textDocument/inlineCompletion params
                  (lambda (result)
                    (if (not (funcall mine-p))
                        (funcall stale)
                      (with-current-buffer buffer
                        (setq fimlsp--pending nil)
                        (fimlsp--count :answered)
                        (if (and (eq tick (buffer-chars-modified-tick))
                                 (eq point (point)))
                            (fimlsp--receive result pick)
                          (fimlsp--count :stale)))))
                  (lambda (error)
                    (if (not (funcall mine-p))
                        (funcall stale)
                      (with-current-buffer buffer
                        (setq fimlsp--pending nil)
                        (unless (eql (plist-get error :code) -32800)
                          (fimlsp--count :errors)
                          (message "fimlsp: %s" (plist-get error :message))))))
                  (lambda ()
                    (when (funcall mine-p)
                      (with-current-buffer buffer
                        (setq fimlsp--pending nil)
                        (fimlsp--count :errors)))))))
        (setq fimlsp--pending (list :gen gen :id id :connection connection
                                    :tick tick :point point))
        (fimlsp--count :sent)
        t))))

(defun fimlsp--item-text (item)
  "The insertText of inline completion ITEM, a string."
  (let ((text (plist-get item :insertText)))
    (cond ((stringp text) text)
          ((consp text) (or (plist-get text :value) ""))
          (t ""))))

(defun fimlsp--receive (result &optional pick)
  "Show usable item PICK (1 when nil, wrapping) of inline completion RESULT.
The others (the first answer and its alternatives) stay at hand for
`fimlsp-next-suggestion'."
  (let ((choices (cl-remove-if (lambda (it) (string-empty-p (fimlsp--item-text it)))
                               (append (if (vectorp result) result
                                         (plist-get result :items))
                                       nil))))
    (when choices
      (fimlsp--use-item choices (mod (1- (or pick 1)) (length choices))))))

(defun fimlsp--use-item (choices index)
  "Show item INDEX (from 0) of CHOICES, usable inline completion items, at point."
  (let* ((item (nth index choices))
         (range (plist-get item :range))
         (start (if range (fimlsp--point (plist-get range :start)) (point)))
         (end (if range (fimlsp--point (plist-get range :end)) (point))))
    (when fimlsp--item (set-marker (plist-get fimlsp--item :start) nil))
    (setq fimlsp--item (list :text (fimlsp--item-text item)
                             :start (copy-marker (min start (point)))
                             :end-offset (max 0 (- end (point)))
                             :command (plist-get item :command)
                             :accepted 0
                             :choices choices
                             :index index))
    (if (fimlsp--ghost)
        (progn (fimlsp--show) (fimlsp--count :shown))
      (fimlsp--clear))))

;;;; Display

(defun fimlsp--ghost ()
  "The part of the suggestion not yet in the buffer, or nil if it does not fit.
It fits when the text from the item's start to point is a prefix of it."
  (when fimlsp--item
    (let ((start (plist-get fimlsp--item :start))
          (text (plist-get fimlsp--item :text)))
      (when (and (marker-buffer start) (<= start (point))
                 (<= (- (point) start) (length text)))
        (let ((typed (buffer-substring-no-properties start (point))))
          (when (string-prefix-p typed text)
            (let ((ghost (substring text (length typed))))
              (unless (string-empty-p ghost) ghost))))))))

(defun fimlsp--closed-after-point (ghost)
  "How many characters ending GHOST's first line are already after point.
An electric pair (or the user) put a closer after point: a suggestion
`a, b)' after `(' with `)' after point is shown and inserted as `a, b'."
  (let* ((first (substring ghost 0 (string-match-p "\n" ghost)))
         (after (buffer-substring-no-properties (point) (line-end-position)))
         (after (string-trim-right after)))
    (if (and (not (string-empty-p after))
             (<= (length after) (length first))
             (string-suffix-p after first)
             (string-match-p "\\`[])}>\"'`;,]+\\'" after))
        (length after)
      0)))

(defun fimlsp--visible-ghost ()
  "The ghost text as shown and inserted.
A one-line suggestion leaves out the closers already after point."
  (let ((ghost (fimlsp--ghost)))
    (if (or (null ghost) (string-match-p "\n" ghost))
        ghost
      (let ((visible (substring ghost 0 (- (length ghost)
                                            (fimlsp--closed-after-point ghost)))))
        (unless (string-empty-p visible) visible)))))

(defun fimlsp--show ()
  "Draw the ghost text at point."
  (let ((ghost (fimlsp--visible-ghost)))
    (unless (overlayp fimlsp--overlay)
      (setq fimlsp--overlay (make-overlay (point) (point) nil nil nil))
      (overlay-put fimlsp--overlay 'fimlsp t)
      (overlay-put fimlsp--overlay 'priority 1000))
    (move-overlay fimlsp--overlay (point) (point) (current-buffer))
    (let ((string (propertize ghost 'face 'fimlsp-ghost-face)))
      ;; Keep the cursor before the ghost text, not after it.
      (put-text-property 0 1 'cursor t string)
      (overlay-put fimlsp--overlay 'after-string string))
    (setq fimlsp--suggestion-shown t
          fimlsp--last-tick (buffer-chars-modified-tick)
          fimlsp--last-point (point))))

(defun fimlsp--clear ()
  "Remove the ghost text and forget the suggestion."
  (when (overlayp fimlsp--overlay) (delete-overlay fimlsp--overlay))
  (when fimlsp--item (set-marker (plist-get fimlsp--item :start) nil))
  (setq fimlsp--overlay nil fimlsp--item nil fimlsp--suggestion-shown nil))

(defun fimlsp-current-suggestion ()
  "The ghost text shown at point, or nil."
  (and fimlsp--suggestion-shown (overlayp fimlsp--overlay)
       (overlay-get fimlsp--overlay 'after-string)
       (substring-no-properties (overlay-get fimlsp--overlay 'after-string))))

;;;; Commands

(defun fimlsp-complete ()
  "Ask the server for a suggestion at point now.
Starts the server again if it is not running (after a crash, say)."
  (interactive)
  (fimlsp--clear)
  (fimlsp--ensure-connection)
  (unless (fimlsp--request 1)
    (when (called-interactively-p 'interactive)
      (user-error "Fimlsp: no server (yet) for this buffer%s"
                  (if fimlsp--start-error (concat ": " fimlsp--start-error) "")))))

(defun fimlsp-dismiss ()
  "Hide the suggestion and cancel any request in flight."
  (interactive)
  (fimlsp--cancel-pending)
  (fimlsp--clear))

(defun fimlsp--insert (text)
  "Insert TEXT at point, replacing the range's tail after point first."
  (let ((end-offset (plist-get fimlsp--item :end-offset)))
    (when (> end-offset 0)
      (delete-region (point) (min (point-max) (+ (point) end-offset)))
      (setq fimlsp--item (plist-put fimlsp--item :end-offset 0))))
  (insert text))

(defun fimlsp-accept ()
  "Insert the whole suggestion and tell the server it was taken."
  (interactive)
  (let ((ghost (fimlsp--visible-ghost))
        (item fimlsp--item)
        (connection fimlsp--opened))
    (unless ghost (user-error "Fimlsp: no suggestion"))
    (fimlsp--cancel-pending)
    (fimlsp--insert ghost)
    (fimlsp--clear)
    (fimlsp--count :accepted)
    ;; LSP: the item's command runs after its text is inserted.
    (let ((command (plist-get item :command)))
      (when (and connection (jsonrpc-running-p connection)
                 command (plist-get command :command))
        (fimlsp--execute connection (plist-get command :command)
                         (or (plist-get command :arguments) []))))
    (setq fimlsp--last-tick (buffer-chars-modified-tick)
          fimlsp--last-point (point))
    (fimlsp--schedule)
    (fimlsp--schedule-next-edit)))  ; an accepted suggestion is a pause worth one

(defun fimlsp-accept-line ()
  "Insert the suggestion's next line, newline included; keep showing the rest."
  (interactive)
  (let* ((ghost (fimlsp--ghost))
         (newline (and ghost (string-match-p "\n" ghost 1))))
    (unless ghost (user-error "Fimlsp: no suggestion"))
    (if (null newline)
        (fimlsp-accept)
      (fimlsp--accept-part ghost (substring ghost 0 (1+ newline))))))

(defun fimlsp--next-word (text)
  "The next word of TEXT, as VS Code and the Neovim plugin take it.
Blanks then a run of word characters, or of punctuation; at a line
break, the break and the next line's indentation."
  (cond ((string-prefix-p "\n" text)
         (string-match "\\`\n[ \t]*" text)
         (match-string 0 text))
        ((or (string-match "\\`[ \t]*[[:alnum:]_]+" text)
             (string-match "\\`[ \t]*[^[:alnum:]_ \t\n]+" text)
             (string-match "\\`[ \t]+" text))
         (match-string 0 text))
        (t (substring text 0 (min 1 (length text))))))

(defun fimlsp-accept-word ()
  "Insert the suggestion's next word; keep showing the rest."
  (interactive)
  (let ((ghost (fimlsp--ghost)))
    (unless ghost (user-error "Fimlsp: no suggestion"))
    (let ((word (fimlsp--next-word ghost)))
      (if (or (string-empty-p word) (= (length word) (length ghost)))
          (fimlsp-accept)
        (fimlsp--accept-part ghost word)))))

(defun fimlsp--accept-part (ghost part)
  "Insert PART, the start of GHOST (what is left of the suggestion).
Tells the server how much of the suggestion is taken so far."
  (let* ((item fimlsp--item)
         (connection fimlsp--opened)
         (accepted (+ (length (plist-get item :text)) (- (length ghost))
                      (length part)))
         (command (plist-get item :command))
         (arguments (plist-get command :arguments)))
    (fimlsp--cancel-pending)
    (fimlsp--insert part)
    (setq fimlsp--item (plist-put item :accepted accepted))
    (fimlsp--count :partial)
    ;; fimlsp.partialAccept [id, characters of the item taken so far]
    (when (and connection (jsonrpc-running-p connection)
               (equal (plist-get command :command) "fimlsp.accept")
               (> (length arguments) 0))
      (fimlsp--execute connection "fimlsp.partialAccept"
                       (vector (aref arguments 0) accepted)))
    (if (fimlsp--ghost) (fimlsp--show) (fimlsp--clear))))

(defun fimlsp--cycle (step)
  "Show the alternative STEP items away (1 next, -1 previous)."
  (unless (fimlsp--ghost) (user-error "Fimlsp: no suggestion"))
  (let* ((item fimlsp--item)
         (choices (plist-get item :choices))
         (untouched (and (= (point) (plist-get item :start))
                         (eql 0 (plist-get item :accepted)))))
    (if (and untouched (> (length choices) 1))
        (fimlsp--use-item choices (mod (+ (plist-get item :index) step)
                                       (length choices)))
      ;; The server computes alternatives after it sent the first answer:
      ;; ask again here (invoked: it waits for them) and show the next item.
      (fimlsp--request 1 (+ 1 step)))))

(defun fimlsp-next-suggestion ()
  "Show the next alternative to the suggestion.
The server computes up to `alternatives' of them after it sent the
first suggestion; the first call asks again at point, then the list
answered is cycled while nothing is typed."
  (interactive)
  (fimlsp--cycle 1))

(defun fimlsp-previous-suggestion ()
  "Show the previous alternative to the suggestion."
  (interactive)
  (fimlsp--cycle -1))

(defun fimlsp-accept-or-indent ()
  "Accept the suggestion if one is shown, else do what TAB does without it."
  (interactive)
  (if (fimlsp--ghost)
      (fimlsp-accept)
    (let* ((fimlsp--suggestion-shown nil)
           (command (key-binding (this-command-keys-vector))))
      (when (commandp command) (call-interactively command)))))

(defun fimlsp--command (command)
  "Run fimlsp COMMAND on the server and wait for its answer."
  (let ((connection (or (fimlsp-connection)
                        (user-error "Fimlsp: the server is not running (yet)"))))
    (jsonrpc-request connection :workspace/executeCommand
                     (list :command command :arguments []))))

(defun fimlsp-stats ()
  "Show the server's state, last request's timings and counters; return them."
  (interactive)
  (let ((stats (fimlsp--command "fimlsp.stats")))
    (when (called-interactively-p 'interactive)
      (message "fimlsp: %s"
               (mapconcat (lambda (pair) (format "%s %s" (car pair) (cdr pair)))
                          (cl-loop for (k v) on stats by #'cddr
                                   when v collect (cons (substring (symbol-name k) 1) v))
                          ", ")))
    stats))

(defun fimlsp--describe-server (stats)
  "One line on the server from its STATS: version, model, device, quantization."
  (cl-flet ((value (key) (or (plist-get stats key) "?")))
    (format "fimlsp %s, model %s on %s (quantization %s)"
            (value :version) (value :model) (value :device) (value :quantization))))

(defun fimlsp-version ()
  "Show and return fimlsp.el's version and the running server's.
The server's line names its version, the model, the device it runs on
and its quantization."
  (interactive)
  (let* ((stats (and (fimlsp-connection) (ignore-errors (fimlsp--command "fimlsp.stats"))))
         (text (format "fimlsp.el %s; server: %s" fimlsp-version
                       (if stats (fimlsp--describe-server stats) "not running"))))
    (when (called-interactively-p 'interactive) (message "%s" text))
    text))

(defun fimlsp-apply-options ()
  "Send the `fimlsp' options to the running server (didChangeConfiguration)."
  (interactive)
  (let ((connection (or (fimlsp-connection)
                        (user-error "Fimlsp: the server is not running (yet)"))))
    (jsonrpc-notify connection :workspace/didChangeConfiguration
                    (list :settings (list :fimlsp (fimlsp--json-options))))))

;;;; Classic completion

(defun fimlsp-completion-at-point ()
  "Completion at point from the model (`textDocument/completion').
For `completion-at-point-functions'; not added by `fimlsp-mode', so that
the language server's completions stay first."
  (let ((connection (fimlsp--ready-connection)))
    (when connection
      (fimlsp--flush-changes)
      (let* ((result (jsonrpc-request
                      connection :textDocument/completion
                      (list :textDocument (list :uri fimlsp--uri)
                            :position (fimlsp--position))
                      :timeout fimlsp-request-timeout
                      ;; Typing goes on while the model thinks: no freeze until C-g.
                      :cancel-on-input t))
             (items (if (vectorp result) result (plist-get result :items)))
             (start (point))
             (candidates
              (delq nil
                    (mapcar (lambda (item)
                              (let ((edit (plist-get item :textEdit)))
                                (when edit
                                  (setq start (min start (fimlsp--point
                                                          (plist-get (plist-get edit :range)
                                                                     :start)))))
                                (or (plist-get edit :newText)
                                    (plist-get item :insertText)
                                    (plist-get item :label))))
                            items))))
        (when candidates
          (list start (point) candidates :exclusive 'no))))))

;;;; The editor's definitions (eglot)

;; fimlsp.el needs nothing of eglot, and loads none of it: where eglot
;; manages a buffer, its public `eglot-current-server' gives the connection
;; to ask, and jsonrpc's `jsonrpc-connection-ready-p' says when eglot has
;; sent that server the buffer's latest changes.
(declare-function eglot-current-server "eglot" ())
(declare-function eglot-server-capable "eglot" (&rest feats))

(defconst fimlsp--definition-names 6
  "Identifiers looked up per lookup, nearest point first.")
(defconst fimlsp--definition-lines 14
  "Lines of each definition sent, as the server's own index shows them.")
(defconst fimlsp--definition-chars 4000
  "Characters of each definition sent, at most (the server keeps no more).")
(defconst fimlsp--definition-file-bytes (* 4 1024 1024)
  "Larger files are not read for a definition.")

(defun fimlsp--names-near ()
  "Identifiers before point, nearest first: a list of (NAME . POSITION).
Those of point's line (the word being typed left out) and the two lines
above, at least three characters long, each once."
  (save-excursion
    (save-restriction
      (widen)
      (let ((end (point)) (case-fold-search nil) names)
        (cl-loop
         for line below 3
         do (let* ((bol (line-beginning-position))
                   (text (buffer-substring-no-properties
                          bol (if (zerop line) end (line-end-position))))
                   (start 0) found)
              (when (zerop line)
                (setq text (replace-regexp-in-string "[A-Za-z0-9_$]+\\'" "" text)))
              (while (string-match "[A-Za-z_$][A-Za-z0-9_$]*" text start)
                (push (cons (match-string 0 text) (+ bol (match-beginning 0))) found)
                (setq start (match-end 0)))
              (dolist (name found)   ; nearest first already
                (when (and (>= (length (car name)) 3)
                           (not (assoc (car name) names))
                           (< (length names) fimlsp--definition-names))
                  (push name names))))
         until (/= 0 (forward-line -1)))
        (nreverse names)))))

(defun fimlsp--file-uri (file)
  "The file: URI of FILE, its true name, as eglot names it to its server."
  (let ((path (file-truename file))
        (allowed (copy-sequence url-path-allowed-chars)))
    (aset allowed ?: nil)
    (concat "file://" (if (string-prefix-p "/" path) "" "/")
            (url-hexify-string path allowed))))

(defun fimlsp--uri-file (uri)
  "The local file of file: URI, or nil."
  (when (and (stringp uri) (string-prefix-p "file://" uri))
    (let ((path (decode-coding-string
                 (url-unhex-string (replace-regexp-in-string "\\`file://[^/]*" "" uri))
                 'utf-8)))
      (if (string-match "\\`/[A-Za-z]:" path) (substring path 1) path))))

(defun fimlsp--definition-text (uri line)
  "Up to `fimlsp--definition-lines' lines of URI from 0-based LINE, or nil.
From the buffer visiting it if there is one (unsaved changes included),
else from the file, read as the user: a file they cannot read gives nil."
  (let* ((file (fimlsp--uri-file uri))
         (visiting (and file (find-buffer-visiting file)))
         (text
          (cond
           ((not (natnump line)) nil)
           (visiting
            (with-current-buffer visiting
              (save-excursion
                (save-restriction
                  (widen)
                  (goto-char (point-min))
                  (when (zerop (forward-line line))
                    (let ((start (point)))
                      (forward-line fimlsp--definition-lines)
                      (buffer-substring-no-properties start (point))))))))
           ((and file (file-regular-p file) (file-readable-p file)
                 (< (or (file-attribute-size (file-attributes file)) 0)
                    fimlsp--definition-file-bytes))
            (with-temp-buffer
              (condition-case nil
                  (progn
                    (insert-file-contents file)
                    (goto-char (point-min))
                    (when (zerop (forward-line line))
                      (let ((start (point)))
                        (forward-line fimlsp--definition-lines)
                        (buffer-substring-no-properties start (point)))))
                (file-error nil)))))))
    (when (and text (string-match-p "[^ \t\n]" text))
      (substring text 0 (min (length text) fimlsp--definition-chars)))))

(defun fimlsp--definition-location (result)
  "The first location of a `textDocument/definition' RESULT: (URI . LINE)."
  (let* ((first (cond ((vectorp result) (and (> (length result) 0) (aref result 0)))
                      ((listp result) result)))
         (uri (or (plist-get first :targetUri) (plist-get first :uri)))
         (range (or (plist-get first :targetRange) (plist-get first :range)))
         (line (plist-get (plist-get range :start) :line)))
    (and (stringp uri) (natnump line) (cons uri line))))

(defun fimlsp--update-definitions ()
  "Look up the definitions near point if its identifiers changed.
Only where eglot manages the buffer; see `fimlsp-editor-definitions'."
  (when (and fimlsp-editor-definitions buffer-file-name
             (fboundp 'eglot-current-server))
    (let ((server (eglot-current-server))
          (connection (fimlsp--ready-connection)))
      (when (and server connection (jsonrpc-running-p server))
        (let ((key (mapconcat #'car (fimlsp--names-near) " ")))
          (unless (equal key fimlsp--definitions-key)
            (setq fimlsp--definitions-key key)
            (fimlsp--count :definition-lookups)
            ;; Looked at first from a timer: eglot may learn of the change
            ;; itself only from one (Emacs 30's track-changes signals so).
            (run-with-timer 0.1 nil #'fimlsp--definitions-when-ready
                            (current-buffer) (cl-incf fimlsp--definitions-generation)
                            server connection
                            (+ (float-time) fimlsp-editor-definitions-timeout))))))))

(defun fimlsp--definitions-when-ready (buffer gen server connection deadline)
  "Ask SERVER about the names near point in BUFFER once it is ready.
eglot's server is ready once eglot has sent it the buffer's latest
changes (`jsonrpc-connection-ready-p'), which it does when Emacs is idle:
until then this looks again every tenth of a second, up to DEADLINE.  The
positions are taken then, from the buffer as the server has it.  GEN: the
lookup; a newer one makes this one stop.  CONNECTION: fimlsp's."
  (when (and (buffer-live-p buffer)
             (eql gen (buffer-local-value 'fimlsp--definitions-generation buffer)))
    (with-current-buffer buffer
      (cond
       ((not (jsonrpc-running-p server)))
       ((jsonrpc-connection-ready-p server :textDocument/definition)
        (fimlsp--look-up-definitions server connection gen (fimlsp--names-near)
                                     (- deadline (float-time))))
       ((> (float-time) deadline)
        (fimlsp--count :definition-timeouts)
        (setq fimlsp--definitions-key nil))   ; the next command looks up again
       (t (run-with-timer 0.1 nil #'fimlsp--definitions-when-ready
                          buffer gen server connection deadline))))))

(defun fimlsp--look-up-definitions (server connection gen names timeout)
  "Ask eglot's SERVER where NAMES are defined; send the answers to CONNECTION.
NAMES: a list of (NAME . POSITION) in the current buffer.  GEN: the
lookup.  Asynchronous: what has not answered after TIMEOUT seconds (at
least one) is left out."
  (let* ((buffer (current-buffer))
         (encoding (or (and (fboundp 'eglot-server-capable)
                            (ignore-errors (eglot-server-capable :positionEncoding)))
                       "utf-16"))
         (uri (fimlsp--file-uri buffer-file-name))
         (own-file (file-truename buffer-file-name))
         (found (make-vector (length names) nil))
         (waiting (length names))
         (finish
          (lambda ()
            (when (buffer-live-p buffer)
              (with-current-buffer buffer
                (when (eql gen fimlsp--definitions-generation)
                  (fimlsp--count :definitions-sent)
                  (fimlsp--execute connection "fimlsp.context"
                                   (vector fimlsp--uri
                                           (vconcat (delq nil (append found nil))))))))))
         (done
          (lambda (index result timed-out)
            (when (and (buffer-live-p buffer)
                       (eql gen (buffer-local-value 'fimlsp--definitions-generation buffer)))
              (when timed-out
                (with-current-buffer buffer (fimlsp--count :definition-timeouts)))
              (let* ((location (fimlsp--definition-location result))
                     (file (and location (fimlsp--uri-file (car location)))))
                (when (and file (not (equal (ignore-errors (file-truename file)) own-file)))
                  (let ((text (fimlsp--definition-text (car location) (cdr location))))
                    (when text
                      (aset found index
                            (list :uri (car location) :line (cdr location)
                                  :name (car (nth index names)) :text text))))))
              (when (zerop (cl-decf waiting))
                (funcall finish))))))
    (if (null names)
        (funcall finish)
      (cl-loop
       for (_name . position) in names
       for index from 0
       do (let ((index index))
            (jsonrpc-async-request
             server :textDocument/definition
             (list :textDocument (list :uri uri)
                   :position
                   (save-excursion
                     (save-restriction
                       (widen)
                       (goto-char position)
                       (list :line (1- (line-number-at-pos nil t))
                             :character (fimlsp--units
                                         (buffer-substring-no-properties
                                          (line-beginning-position) position)
                                         encoding)))))
             :success-fn (lambda (result) (funcall done index result nil))
             :error-fn (lambda (_error) (funcall done index nil nil))
             :timeout-fn (lambda () (funcall done index nil t))
             :timeout (max 1 timeout)))))))

;;;; Automatic requests

(defun fimlsp--schedule-warm ()
  "Ask for a warm start once point has rested `fimlsp-warm-delay' seconds."
  (when (timerp fimlsp--warm-timer) (cancel-timer fimlsp--warm-timer))
  (setq fimlsp--warm-timer
        (and fimlsp-warm
             (run-with-idle-timer fimlsp-warm-delay nil #'fimlsp--on-warm-idle
                                  (current-buffer)))))

(defun fimlsp--on-warm-idle (buffer)
  "Timer function: ask the server to prefill the prompt at point in BUFFER."
  (when (and (buffer-live-p buffer) (eq buffer (window-buffer (selected-window))))
    (with-current-buffer buffer
      (setq fimlsp--warm-timer nil)
      (let ((connection (and fimlsp-mode (fimlsp--ready-connection))))
        (when connection
          (fimlsp--flush-changes)
          (fimlsp--execute connection "fimlsp.warm"
                           (vector fimlsp--uri (fimlsp--position))))))))

(defun fimlsp--schedule ()
  "Ask for a suggestion once Emacs has been idle `fimlsp-idle-delay' seconds."
  (when (timerp fimlsp--timer) (cancel-timer fimlsp--timer))
  (setq fimlsp--timer
        (and fimlsp-auto-trigger
             (run-with-idle-timer fimlsp-idle-delay nil #'fimlsp--on-idle
                                  (current-buffer)))))

(defun fimlsp--on-idle (buffer)
  "Timer function: request a suggestion in BUFFER if it is still worth it."
  (when (and (buffer-live-p buffer) (eq buffer (window-buffer (selected-window))))
    (with-current-buffer buffer
      (setq fimlsp--timer nil)
      (when (and fimlsp-mode (not fimlsp--suggestion-shown) (not (use-region-p))
                 (not (and fimlsp--pending
                           (eq (plist-get fimlsp--pending :tick)
                               (buffer-chars-modified-tick))
                           (eq (plist-get fimlsp--pending :point) (point)))))
        (fimlsp--request 2)))))

(defun fimlsp--schedule-next-edit ()
  "Ask for the next edit once Emacs has been idle `fimlsp-next-edit-delay' seconds."
  (when (timerp fimlsp--next-edit-timer) (cancel-timer fimlsp--next-edit-timer))
  (setq fimlsp--next-edit-timer
        (and fimlsp-next-edit-auto
             (run-with-idle-timer fimlsp-next-edit-delay nil #'fimlsp--on-next-edit-idle
                                  (current-buffer)))))

(defun fimlsp--on-next-edit-idle (buffer)
  "Timer function: ask for the next edit at point in BUFFER, if it is shown."
  (when (and (buffer-live-p buffer) (eq buffer (window-buffer (selected-window))))
    (with-current-buffer buffer
      (setq fimlsp--next-edit-timer nil)
      (when (and fimlsp-mode (not fimlsp--next-edit) (not (use-region-p)))
        (fimlsp--next-edit-request 2)))))

(defconst fimlsp--own-commands
  '(fimlsp-accept fimlsp-accept-line fimlsp-accept-word fimlsp-accept-or-indent
    fimlsp-complete fimlsp-dismiss fimlsp-next-suggestion fimlsp-previous-suggestion)
  "Commands that manage the suggestion themselves.")

(defun fimlsp--post-command ()
  "After each command: keep, update or dismiss the suggestion; maybe schedule."
  (fimlsp--flush-changes)
  (unless (memq this-command fimlsp--own-commands)
    (let* ((tick (buffer-chars-modified-tick))
           (changed (not (eq tick fimlsp--last-tick)))
           (moved (not (eq (point) fimlsp--last-point))))
      (when fimlsp--item
        (cond ((not (or changed moved)))                 ; nothing happened
              ;; Typed (or yanked, or a mode's electric key inserted) what the
              ;; suggestion predicted: show the rest.
              ((and changed fimlsp--last-point (> (point) fimlsp--last-point)
                    (fimlsp--ghost))
               (fimlsp--show))
              (t (fimlsp--clear))))
      (when (and fimlsp--pending (or changed moved))
        (fimlsp--cancel-pending))
      (when (and changed (not fimlsp--item))
        (fimlsp--schedule))
      (when changed
        (fimlsp--schedule-next-edit))
      (when (and moved (not changed))
        (fimlsp--schedule-warm))
      (when (or changed moved)
        (with-demoted-errors "fimlsp: looking up definitions: %S"
          (fimlsp--update-definitions)))
      (setq fimlsp--last-tick tick
            fimlsp--last-point (point)))))

;;;; Next edits

(defun fimlsp-next-edit ()
  "Ask the server for the next edit at point and show it as an overlay diff.
The text it would replace is shown in `fimlsp-next-edit-delete-face', the
new text right after it in `fimlsp-next-edit-add-face'.  The edit is for
the buffer's text as it is now: any change hides it.  Needs a next-edit
model on the server (see its README).  Returns non-nil if a request was
sent."
  (interactive)
  (fimlsp--next-edit-request 1))

(defun fimlsp--next-edit-request (trigger-kind)
  "Ask for the next edit at point; TRIGGER-KIND 1 is invoked, 2 automatic.
Returns non-nil if a request was sent."
  (let ((connection (fimlsp--ready-connection)))
    (when connection
      (when (timerp fimlsp--next-edit-timer) (cancel-timer fimlsp--next-edit-timer))
      (setq fimlsp--next-edit-timer nil)
      (fimlsp--flush-changes)
      (let ((buffer (current-buffer))
            (version fimlsp--doc-version))
        (fimlsp--async-request
         connection :textDocument/copilotInlineEdit
         (list :textDocument (list :uri fimlsp--uri :version version)
               :position (fimlsp--position)
               :context (list :triggerKind trigger-kind))
         (lambda (result)
           (when (buffer-live-p buffer)
             (with-current-buffer buffer
               (setq fimlsp-next-edit-last result)
               (let ((edits (plist-get result :edits)))
                 ;; Shown only for the text it was made for.
                 (when (and (> (length edits) 0) (eql version fimlsp--doc-version)
                            (null fimlsp--changes))
                   (fimlsp--show-next-edit (elt edits 0) version))))))
         (lambda (error)
           (when (buffer-live-p buffer)
             (with-current-buffer buffer
               (setq fimlsp-next-edit-last (list :error error)))))
         (lambda ()
           (when (buffer-live-p buffer)
             (with-current-buffer buffer
               (setq fimlsp-next-edit-last (list :timeout fimlsp-request-timeout))))))
        t))))

(defun fimlsp--show-next-edit (edit version)
  "Show EDIT, made for document VERSION, as overlays."
  (fimlsp-next-edit-dismiss)
  (let* ((range (plist-get edit :range))
         (start (fimlsp--point (plist-get range :start)))
         (end (fimlsp--point (plist-get range :end)))
         (old (make-overlay start end nil t nil))
         (new (make-overlay end end nil t nil)))
    (overlay-put old 'face 'fimlsp-next-edit-delete-face)
    (overlay-put new 'after-string
                 (propertize (or (plist-get edit :text) "") 'face 'fimlsp-next-edit-add-face))
    (setq fimlsp--next-edit (list :edit edit :version version :overlays (list old new)))))

(defun fimlsp-next-edit-dismiss ()
  "Hide the next edit on show; non-nil if there was one."
  (interactive)
  (when fimlsp--next-edit
    (mapc #'delete-overlay (plist-get fimlsp--next-edit :overlays))
    (setq fimlsp--next-edit nil)
    t))

(defun fimlsp-next-edit-jump ()
  "Move point to the start of the next edit on show; non-nil if it moved."
  (interactive)
  (when fimlsp--next-edit
    (let ((start (overlay-start (car (plist-get fimlsp--next-edit :overlays)))))
      (when (and start (/= start (point)))
        (goto-char start)
        t))))

(defun fimlsp-next-edit-apply ()
  "Apply the next edit on show, if the buffer is still as it was made for.
Returns non-nil if it was applied."
  (interactive)
  (let ((shown fimlsp--next-edit))
    (fimlsp-next-edit-dismiss)
    (when (and shown (eql (plist-get shown :version) fimlsp--doc-version)
               (null fimlsp--changes))
      (let* ((edit (plist-get shown :edit))
             (range (plist-get edit :range))
             (start (fimlsp--point (plist-get range :start)))
             (end (fimlsp--point (plist-get range :end)))
             (command (plist-get edit :command))
             (connection (fimlsp--ready-connection)))
        (save-excursion
          (goto-char start)
          (delete-region start end)
          (insert (or (plist-get edit :text) "")))
        (when (and command connection)
          (fimlsp--execute connection (plist-get command :command)
                           (or (plist-get command :arguments) [])))
        t))))

;;;; Keymaps and minor modes

(defvar fimlsp-suggestion-map
  (let ((map (make-sparse-keymap)))
    (define-key map (kbd "TAB") #'fimlsp-accept-or-indent)
    (define-key map (kbd "<tab>") #'fimlsp-accept-or-indent)
    (define-key map (kbd "C-<right>") #'fimlsp-accept-word)
    (define-key map (kbd "M-<right>") #'fimlsp-accept-line)
    (define-key map (kbd "C-M-<right>") #'fimlsp-accept-line)
    (define-key map (kbd "M-n") #'fimlsp-next-suggestion)
    (define-key map (kbd "M-]") #'fimlsp-next-suggestion)
    (define-key map (kbd "M-p") #'fimlsp-previous-suggestion)
    (define-key map (kbd "C-g") #'fimlsp-dismiss)
    map)
  "Keymap active while a suggestion is shown.")

(defvar fimlsp-mode-map
  (let ((map (make-sparse-keymap)))
    (define-key map (kbd "C-c ]") #'fimlsp-complete)
    map)
  "Keymap of `fimlsp-mode'.")

(defvar fimlsp--emulation-alist
  `((fimlsp--suggestion-shown . ,fimlsp-suggestion-map))
  "Puts `fimlsp-suggestion-map' above other minor modes' maps while shown.")

;;;###autoload
(define-minor-mode fimlsp-mode
  "Ghost-text suggestions from the fimlsp server, beside your language server.
Starts the server (one for all buffers) if it is not running and keeps
its copy of the buffer in sync.  After an edit and `fimlsp-idle-delay'
seconds of idleness, asks the server for a suggestion and shows it after
point.  While it is shown:
\\<fimlsp-suggestion-map>\\[fimlsp-accept-or-indent] accepts it,
\\[fimlsp-accept-word] its next word, \\[fimlsp-accept-line] its next line;
\\[fimlsp-next-suggestion] and \\[fimlsp-previous-suggestion] show its alternatives;
\\[fimlsp-dismiss] dismisses it.

\\{fimlsp-mode-map}"
  :lighter fimlsp-mode-line
  :keymap fimlsp-mode-map
  (if fimlsp-mode
      (progn
        (add-to-list 'emulation-mode-map-alists 'fimlsp--emulation-alist)
        (add-hook 'before-change-functions #'fimlsp--before-change nil t)
        (add-hook 'after-change-functions #'fimlsp--after-change nil t)
        (add-hook 'post-command-hook #'fimlsp--post-command nil t)
        (add-hook 'kill-buffer-hook #'fimlsp--close nil t)
        (add-hook 'after-set-visited-file-name-hook #'fimlsp--renamed nil t)
        (setq fimlsp--last-tick (buffer-chars-modified-tick)
              fimlsp--last-point (point))
        (when (fimlsp--ensure-connection) (fimlsp--open))
        (fimlsp--schedule-warm))
    (remove-hook 'before-change-functions #'fimlsp--before-change t)
    (remove-hook 'after-change-functions #'fimlsp--after-change t)
    (remove-hook 'post-command-hook #'fimlsp--post-command t)
    (remove-hook 'kill-buffer-hook #'fimlsp--close t)
    (remove-hook 'after-set-visited-file-name-hook #'fimlsp--renamed t)
    (when (timerp fimlsp--timer) (cancel-timer fimlsp--timer))
    (when (timerp fimlsp--warm-timer) (cancel-timer fimlsp--warm-timer))
    (when (timerp fimlsp--next-edit-timer) (cancel-timer fimlsp--next-edit-timer))
    (setq fimlsp--timer nil fimlsp--warm-timer nil fimlsp--next-edit-timer nil)
    (fimlsp-next-edit-dismiss)
    (fimlsp-dismiss)
    (fimlsp--close)))

(defun fimlsp--turn-on ()
  "Turn on `fimlsp-mode' in a file buffer of one of `fimlsp-major-modes'."
  (when (and buffer-file-name (not (minibufferp))
             (apply #'derived-mode-p fimlsp-major-modes))
    (fimlsp-mode 1)))

;;;###autoload
(define-globalized-minor-mode global-fimlsp-mode fimlsp-mode fimlsp--turn-on
  :group 'fimlsp)

;;;###autoload
(defun fimlsp-setup ()
  "Turn on `global-fimlsp-mode'.
fimlsp then runs in buffers of `fimlsp-major-modes', beside whatever
language server eglot (or lsp-mode) runs there."
  (interactive)
  (global-fimlsp-mode 1))

(provide 'fimlsp)
;;; fimlsp.el ends here
