;;; fimlsp.el --- Inline (ghost text) completions from a local FIM model, via eglot  -*- lexical-binding: t; -*-

;; Copyright (C) 2026 The fimlsp authors
;; SPDX-License-Identifier: Apache-2.0

;; Author: The fimlsp authors
;; Version: 0.1.0
;; Package-Requires: ((emacs "28.1") (eglot "1.9") (jsonrpc "1.0.14"))
;; Keywords: convenience, tools, languages

;; This file is not part of GNU Emacs.  It is part of fimlsp, licensed
;; under the Apache License, Version 2.0.

;;; Commentary:

;; Emacs client of fimlsp, a language server that answers LSP 3.18
;; `textDocument/inlineCompletion' (Copilot-style ghost text) and classic
;; `textDocument/completion' from a fill-in-the-middle model running on
;; your own machine.
;;
;; eglot starts and talks to the server; eglot has no inline completion
;; of its own, so this package sends `textDocument/inlineCompletion' over
;; eglot's connection, asynchronously, after `fimlsp-idle-delay' seconds
;; of idleness following an edit, cancels requests that went stale (with
;; `$/cancelRequest'), and draws the suggestion as an overlay after point.
;; Classic completion needs nothing from here: eglot's
;; `completion-at-point' function asks the same server.
;;
;; Setup:
;;
;;   (require 'fimlsp)
;;   (fimlsp-setup)                 ; register with eglot, auto-enable `fimlsp-mode'
;;   (add-hook 'python-mode-hook #'eglot-ensure)
;;
;; While a suggestion is shown: TAB accepts it, C-<right> / M-<right>
;; accepts its next line, C-g dismisses it; moving point or typing
;; something it does not predict dismisses it too.  `fimlsp-complete'
;; (C-c ] in `fimlsp-mode') asks for a suggestion now.
;;
;; eglot runs one server per buffer: `fimlsp-setup' makes fimlsp the
;; server for `fimlsp-major-modes', in place of another language server
;; eglot would have started there.

;;; Code:

(require 'cl-lib)
(require 'subr-x)
(require 'jsonrpc)
(require 'eglot)

;;;; Options

(defgroup fimlsp nil
  "Inline completions from a local fill-in-the-middle model (fimlsp server)."
  :group 'tools
  :prefix "fimlsp-")

;; How eglot starts the server.

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
  "Major modes whose buffers `fimlsp-setup' hands to the fimlsp server.
Default: common programming modes, tree-sitter variants included."
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
  "Longest suggestion, in tokens.  nil: not sent [64]."
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
\"debug\" also sends the server's other log lines to eglot's events buffer,
which gets each request's log line at any level.  nil: not sent [\"info\"]."
  :type '(choice (const :tag "Server default" nil) (const "error")
                 (const "warning") (const "info") (const "debug")))

(defcustom fimlsp-extra-options nil
  "More server options, a plist such as (:contextWindow 2048).
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

(defcustom fimlsp-request-timeout 15
  "Seconds after which an unanswered request is given up.  Default: 15."
  :type 'number)

(defface fimlsp-ghost-face
  '((t :inherit shadow))
  "Face of the suggestion (ghost text) shown after point.")

;;;; State

(defvar fimlsp-mode)
(defvar-local fimlsp--overlay nil "Overlay showing the ghost text, or nil.")
(defvar-local fimlsp--item nil
  "The suggestion shown: plist (:text :start :end-offset :command :accepted).
:text is the item's insertText, :start a marker where it begins (the
range's start), :end-offset how many characters after the request's
point the range replaced, :accepted how many characters of :text were
taken with `fimlsp-accept-line' so far.")
(defvar-local fimlsp--pending nil
  "The request in flight: plist (:gen :id :server :tick :point), or nil.")
(defvar-local fimlsp--generation 0 "Counter that tells requests apart.")
(defvar-local fimlsp--timer nil "Idle timer of the next automatic request.")
(defvar-local fimlsp--last-tick nil "`buffer-chars-modified-tick' seen last.")
(defvar-local fimlsp--last-point nil "Point seen last by `post-command-hook'.")
(defvar-local fimlsp--suggestion-shown nil
  "Non-nil while ghost text is shown; activates `fimlsp-suggestion-map'.")

(defvar-local fimlsp-counters nil
  "Plist of counters, for tests and curiosity:
:sent :answered :stale :cancelled :errors :shown :accepted :partial.")

(defun fimlsp--count (key)
  "Add one to counter KEY of `fimlsp-counters'."
  (setq fimlsp-counters
        (plist-put fimlsp-counters key (1+ (or (plist-get fimlsp-counters key) 0)))))

;;;; eglot wiring

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
                                       (:logLevel . fimlsp-log-level))
                  for value = (symbol-value var)
                  when value append (list key value))))
    (append options fimlsp-extra-options)))

(defun fimlsp--json-options ()
  "`fimlsp-initialization-options', or an empty JSON object."
  (or (fimlsp-initialization-options) (make-hash-table)))

(defun fimlsp-eglot-contact (&optional _interactive)
  "Return how eglot should start fimlsp: a contact for `eglot-server-programs'."
  (append fimlsp-server-command
          (list :initializationOptions
                (lambda (_server) (fimlsp--json-options)))))

;;;###autoload
(defun fimlsp-setup ()
  "Register fimlsp with eglot for `fimlsp-major-modes'.
Also turns `fimlsp-mode' on in buffers eglot manages with a server
that offers inline completion."
  (interactive)
  (setq eglot-server-programs
        (cons (cons fimlsp-major-modes #'fimlsp-eglot-contact)
              (cl-remove #'fimlsp-eglot-contact eglot-server-programs
                         :key #'cdr)))
  (add-hook 'eglot-managed-mode-hook #'fimlsp--eglot-managed-hook))

(defun fimlsp--eglot-managed-hook ()
  "Follow eglot: `fimlsp-mode' on where the server has inline completion."
  (if (and (eglot-managed-p) (fimlsp--server))
      (fimlsp-mode 1)
    (when fimlsp-mode (fimlsp-mode -1))))

(defun fimlsp--server ()
  "Return the current buffer's eglot server if it has inline completion."
  (let ((server (and (eglot-managed-p) (eglot-current-server))))
    (and server
         (jsonrpc-running-p server)
         ;; An empty capability object `{}' reads as nil: test membership.
         (plist-member (eglot--capabilities server) :inlineCompletionProvider)
         server)))

(defun fimlsp--async-request (server method params success error timeout)
  "Send METHOD with PARAMS to SERVER without waiting; return its id or nil.
SUCCESS or ERROR is called with the result or error object, TIMEOUT with
no arguments.  The id (for `$/cancelRequest') is only known where
jsonrpc's helper returns it; without it stale answers are still ignored."
  (if (fboundp 'jsonrpc--async-request-1)
      (car (jsonrpc--async-request-1 server method params
                                     :success-fn success :error-fn error
                                     :timeout-fn timeout
                                     :timeout fimlsp-request-timeout))
    (jsonrpc-async-request server method params
                           :success-fn success :error-fn error
                           :timeout-fn timeout :timeout fimlsp-request-timeout)
    nil))

(defun fimlsp--execute (server command arguments)
  "Run COMMAND with ARGUMENTS (a vector) on SERVER; do not wait."
  (fimlsp--async-request server :workspace/executeCommand
                         (list :command command :arguments arguments)
                         #'ignore #'ignore #'ignore))

;;;; Requests

(defun fimlsp--cancel-pending ()
  "Forget the request in flight and ask the server to stop working on it."
  (when fimlsp--pending
    (let ((id (plist-get fimlsp--pending :id))
          (server (plist-get fimlsp--pending :server)))
      (setq fimlsp--pending nil)
      (fimlsp--count :cancelled)
      (when (and id (jsonrpc-running-p server))
        (jsonrpc-notify server :$/cancelRequest (list :id id))))))

(defun fimlsp--request (trigger-kind)
  "Ask for a suggestion at point; TRIGGER-KIND 1 is invoked, 2 automatic.
Returns non-nil if a request was sent."
  (let ((server (fimlsp--server)))
    (when server
      (fimlsp--cancel-pending)
      ;; The server must see the text as it is now: flush eglot's pending
      ;; didChange (it normally waits `eglot-send-changes-idle-time').
      (eglot--signal-textDocument/didChange)
      (let* ((buffer (current-buffer))
             (gen (cl-incf fimlsp--generation))
             (tick (buffer-chars-modified-tick))
             (point (point))
             (params (list :textDocument (eglot--TextDocumentIdentifier)
                           :position (eglot--pos-to-lsp-position)
                           :context (list :triggerKind trigger-kind)))
             (mine-p (lambda ()
                       (and (buffer-live-p buffer)
                            (with-current-buffer buffer
                              (eq gen (plist-get fimlsp--pending :gen))))))
             (id (fimlsp--async-request
                  server :textDocument/inlineCompletion params
                  (lambda (result)
                    (if (not (funcall mine-p))
                        (when (buffer-live-p buffer)
                          (with-current-buffer buffer (fimlsp--count :stale)))
                      (with-current-buffer buffer
                        (setq fimlsp--pending nil)
                        (fimlsp--count :answered)
                        (if (and (eq tick (buffer-chars-modified-tick))
                                 (eq point (point)))
                            (fimlsp--receive result)
                          (fimlsp--count :stale)))))
                  (lambda (error)
                    (if (not (funcall mine-p))
                        (when (buffer-live-p buffer)
                          (with-current-buffer buffer (fimlsp--count :stale)))
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
        (setq fimlsp--pending (list :gen gen :id id :server server
                                    :tick tick :point point))
        (fimlsp--count :sent)
        t))))

(defun fimlsp--item-text (item)
  "The insertText of inline completion ITEM, a string."
  (let ((text (plist-get item :insertText)))
    (cond ((stringp text) text)
          ((consp text) (or (plist-get text :value) ""))
          (t ""))))

(defun fimlsp--receive (result)
  "Show the first usable item of inline completion RESULT at point."
  (let* ((items (if (vectorp result) result (plist-get result :items)))
         (item (cl-find-if (lambda (it) (not (string-empty-p (fimlsp--item-text it))))
                           items)))
    (when item
      (let* ((range (plist-get item :range))
             (start (if range
                        (eglot--lsp-position-to-point (plist-get range :start))
                      (point)))
             (end (if range
                      (eglot--lsp-position-to-point (plist-get range :end))
                    (point))))
        (setq fimlsp--item (list :text (fimlsp--item-text item)
                                 :start (copy-marker (min start (point)))
                                 :end-offset (max 0 (- end (point)))
                                 :command (plist-get item :command)
                                 :accepted 0))
        (if (fimlsp--ghost)
            (progn (fimlsp--show) (fimlsp--count :shown))
          (fimlsp--clear))))))

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

(defun fimlsp--show ()
  "Draw the ghost text at point."
  (let ((ghost (fimlsp--ghost)))
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
  "Ask the server for a suggestion at point now."
  (interactive)
  (fimlsp--clear)
  (unless (fimlsp--request 1)
    (when (called-interactively-p 'interactive)
      (user-error "fimlsp: no eglot server with inline completion here"))))

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
  (let ((ghost (fimlsp--ghost))
        (item fimlsp--item)
        (server (fimlsp--server)))
    (unless ghost (user-error "fimlsp: no suggestion"))
    (fimlsp--cancel-pending)
    (fimlsp--insert ghost)
    (fimlsp--clear)
    (fimlsp--count :accepted)
    ;; LSP: the item's command runs after its text is inserted.
    (let ((command (plist-get item :command)))
      (when (and server command (plist-get command :command))
        (fimlsp--execute server (plist-get command :command)
                         (or (plist-get command :arguments) []))))
    (setq fimlsp--last-tick (buffer-chars-modified-tick)
          fimlsp--last-point (point))
    (fimlsp--schedule)))

(defun fimlsp-accept-line ()
  "Insert the suggestion's next line, newline included; keep showing the rest."
  (interactive)
  (let* ((ghost (fimlsp--ghost))
         (newline (and ghost (string-match-p "\n" ghost 1))))
    (unless ghost (user-error "fimlsp: no suggestion"))
    (if (null newline)
        (fimlsp-accept)
      (let* ((part (substring ghost 0 (1+ newline)))
             (item fimlsp--item)
             (server (fimlsp--server))
             (accepted (+ (length (plist-get item :text)) (- (length ghost))
                          (length part)))
             (command (plist-get item :command))
             (arguments (plist-get command :arguments)))
        (fimlsp--cancel-pending)
        (fimlsp--insert part)
        (setq fimlsp--item (plist-put item :accepted accepted))
        (fimlsp--count :partial)
        ;; fimlsp.partialAccept [id, characters of the item taken so far]
        (when (and server (equal (plist-get command :command) "fimlsp.accept")
                   (> (length arguments) 0))
          (fimlsp--execute server "fimlsp.partialAccept"
                           (vector (aref arguments 0) accepted)))
        (if (fimlsp--ghost) (fimlsp--show) (fimlsp--clear))))))

(defun fimlsp-accept-or-indent ()
  "Accept the suggestion if one is shown, else do what TAB does without it."
  (interactive)
  (if (fimlsp--ghost)
      (fimlsp-accept)
    (let* ((fimlsp--suggestion-shown nil)
           (command (key-binding (this-command-keys-vector))))
      (when (commandp command) (call-interactively command)))))

(defun fimlsp--request-data (command)
  "Run fimlsp COMMAND on the current server and wait for its answer."
  (let ((server (or (fimlsp--server) (user-error "fimlsp: no fimlsp server here"))))
    (jsonrpc-request server :workspace/executeCommand
                     (list :command command :arguments []))))

(defun fimlsp-stats ()
  "Show the server's state, last request's timings and counters; return them."
  (interactive)
  (let ((stats (fimlsp--request-data "fimlsp.stats")))
    (when (called-interactively-p 'interactive)
      (message "fimlsp: %s"
               (mapconcat (lambda (pair) (format "%s %s" (car pair) (cdr pair)))
                          (cl-loop for (k v) on stats by #'cddr
                                   when v collect (cons (substring (symbol-name k) 1) v))
                          ", ")))
    stats))

(defun fimlsp-apply-options ()
  "Send the `fimlsp' options to the running server (didChangeConfiguration)."
  (interactive)
  (let ((server (or (fimlsp--server) (user-error "fimlsp: no fimlsp server here"))))
    (jsonrpc-notify server :workspace/didChangeConfiguration
                    (list :settings (list :fimlsp (fimlsp--json-options))))))

;;;; Automatic requests

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

(defconst fimlsp--own-commands
  '(fimlsp-accept fimlsp-accept-line fimlsp-accept-or-indent fimlsp-complete
    fimlsp-dismiss)
  "Commands that manage the suggestion themselves.")

(defun fimlsp--post-command ()
  "After each command: keep, update or dismiss the suggestion; maybe schedule."
  (unless (memq this-command fimlsp--own-commands)
    (let* ((tick (buffer-chars-modified-tick))
           (changed (not (eq tick fimlsp--last-tick)))
           (moved (not (eq (point) fimlsp--last-point))))
      (when fimlsp--item
        (cond ((not (or changed moved)))                 ; nothing happened
              ;; Typed what the suggestion predicted: show the rest.
              ((and changed (memq this-command '(self-insert-command
                                                 org-self-insert-command))
                    (fimlsp--ghost))
               (fimlsp--show))
              (t (fimlsp--clear))))
      (when (and fimlsp--pending (or changed moved))
        (fimlsp--cancel-pending))
      (when (and changed (not fimlsp--item))
        (fimlsp--schedule))
      (setq fimlsp--last-tick tick
            fimlsp--last-point (point)))))

;;;; Keymaps and minor mode

(defvar fimlsp-suggestion-map
  (let ((map (make-sparse-keymap)))
    (define-key map (kbd "TAB") #'fimlsp-accept-or-indent)
    (define-key map (kbd "<tab>") #'fimlsp-accept-or-indent)
    (define-key map (kbd "C-<right>") #'fimlsp-accept-line)
    (define-key map (kbd "M-<right>") #'fimlsp-accept-line)
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
  "Ghost-text suggestions from the fimlsp server, through eglot.
After an edit and `fimlsp-idle-delay' seconds of idleness, asks the
server for a suggestion and shows it after point.  While it is shown:
\\<fimlsp-suggestion-map>\\[fimlsp-accept-or-indent] accepts it, \
\\[fimlsp-accept-line] accepts its next line, \\[fimlsp-dismiss] dismisses it.

\\{fimlsp-mode-map}"
  :lighter " FIM"
  :keymap fimlsp-mode-map
  (if fimlsp-mode
      (progn
        (add-to-list 'emulation-mode-map-alists 'fimlsp--emulation-alist)
        (add-hook 'post-command-hook #'fimlsp--post-command nil t)
        (setq fimlsp--last-tick (buffer-chars-modified-tick)
              fimlsp--last-point (point)))
    (remove-hook 'post-command-hook #'fimlsp--post-command t)
    (when (timerp fimlsp--timer) (cancel-timer fimlsp--timer))
    (setq fimlsp--timer nil)
    (fimlsp-dismiss)))

(provide 'fimlsp)
;;; fimlsp.el ends here
