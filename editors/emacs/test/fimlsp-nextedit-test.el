;;; fimlsp-nextedit-test.el --- Next edits in Emacs against the real server  -*- lexical-binding: t; -*-

;;; Commentary:

;; Run by tests/editors/test_emacs.py::test_next_edit as
;;
;;   emacs --batch -Q -L editors/emacs -l editors/emacs/test/fimlsp-nextedit-test.el
;;
;; with FIMLSP_TEST_SERVER (JSON array: the server command, a model with a
;; next-edit format), FIMLSP_TEST_DIR and FIMLSP_TEST_RESULTS.  Asks the
;; real server for the next edit after a rename and records the answer:
;; first as the idle timer a change arms would (batch Emacs never goes
;; idle, so the timer's function is called), then explicitly; then shows
;; a known edit (the random-weight model's own rewrite is
;; meaningless) and checks the overlay diff, jump, apply, and that a
;; change hides it and apply then refuses.  Writes JSON results.

;;; Code:

(require 'cl-lib)
(require 'json)
(require 'fimlsp)

(setq make-backup-files nil auto-save-default nil create-lockfiles nil
      vc-handled-backends nil)

(defvar fimlsp-nextedit-test--results nil "Alist written as JSON at the end.")

(defun fimlsp-nextedit-test--put (key value)
  "Record VALUE under KEY."
  (push (cons key value) fimlsp-nextedit-test--results))

(defun fimlsp-nextedit-test--wait (predicate timeout)
  "Process events until PREDICATE is non-nil or TIMEOUT seconds passed."
  (let ((start (float-time)) value)
    (while (and (not (setq value (funcall predicate)))
                (< (- (float-time) start) timeout))
      (accept-process-output nil 0.05))
    value))

(defun fimlsp-nextedit-test--command (command function)
  "Run FUNCTION as if it were the interactive COMMAND (post-command-hook too)."
  (let ((this-command command))
    (run-hooks 'pre-command-hook)
    (funcall function)
    (run-hooks 'post-command-hook)))

(defun fimlsp-nextedit-test--sent-since (start regexp)
  "Non-nil if the server's events buffer matches REGEXP after position START.
Emacs 28 logs messages as plists, Emacs 30 as JSON."
  (with-current-buffer (jsonrpc-events-buffer (fimlsp-connection))
    (save-excursion
      (goto-char start)
      (re-search-forward regexp nil t))))

(defun fimlsp-nextedit-test--events-end ()
  "The end of the server's events buffer now."
  (with-current-buffer (jsonrpc-events-buffer (fimlsp-connection)) (point-max)))

(defun fimlsp-nextedit-test--run-timer (timer)
  "Cancel TIMER and call its function, as Emacs would once idle."
  (cancel-timer timer)
  (apply (timer--function timer) (timer--args timer)))

(defun fimlsp-nextedit-test--line (n)
  "Text of line N (1-based)."
  (save-excursion
    (goto-char (point-min))
    (forward-line (1- n))
    (buffer-substring-no-properties (line-beginning-position) (line-end-position))))

(defun fimlsp-nextedit-test--run ()
  "The checks."
  (let ((file (expand-file-name "shapes.py" (getenv "FIMLSP_TEST_DIR"))))
    (with-temp-file file
      (insert "class Box:\n    def __init__(self, w, h):\n        self.w = w\n"
              "        self.h = h\n\n    def area(self):\n        return self.w * self.h\n"))
    (setq fimlsp-server-command (json-read-from-string (getenv "FIMLSP_TEST_SERVER"))
          fimlsp-server-command (append fimlsp-server-command nil)
          fimlsp-time-budget-ms 60000
          fimlsp-request-timeout 150
          fimlsp-auto-trigger nil
          fimlsp-warm nil)
    (find-file file)
    (python-mode)
    (fimlsp-mode 1)
    (fimlsp-nextedit-test--wait #'fimlsp-connection 60)
    (fimlsp-nextedit-test--put
     'state (plist-get (fimlsp-nextedit-test--wait
                        (lambda ()
                          (let ((stats (ignore-errors (fimlsp-stats))))
                            (and (member (plist-get stats :state) '("ready" "failed"))
                                 stats)))
                        120)
                       :state))
    ;; A rename in the signature, as a command: it arms the next-edit timer,
    ;; which asks by itself (triggerKind 2) at the end of the new name.
    (goto-char (point-min))
    (forward-line 1)
    (move-to-column 26)
    (fimlsp-nextedit-test--command
     'self-insert-command (lambda () (delete-char 1) (insert "height")))
    (let ((timer fimlsp--next-edit-timer)
          (start (fimlsp-nextedit-test--events-end)))
      (fimlsp-nextedit-test--put 'armed_by_change (timerp timer))
      (when (timerp timer)
        (fimlsp-nextedit-test--run-timer timer)
        (fimlsp-nextedit-test--put
         'auto_sent (and (fimlsp-nextedit-test--sent-since start "copilotInlineEdit")
                         (fimlsp-nextedit-test--sent-since start "triggerKind\"?:? ?2")
                         t))
        (let ((answer (fimlsp-nextedit-test--wait (lambda () fimlsp-next-edit-last) 160)))
          (fimlsp-nextedit-test--put 'auto_answered (and answer t))
          (fimlsp-nextedit-test--put
           'auto_versions
           (vconcat (mapcar (lambda (e) (plist-get (plist-get e :textDocument) :version))
                            (plist-get answer :edits)))))))
    (fimlsp-next-edit-dismiss)
    (setq fimlsp-next-edit-last nil)
    ;; Asked for outright, at the same place.
    (fimlsp-nextedit-test--put 'asked (and (fimlsp-next-edit) t))
    (let ((answer (fimlsp-nextedit-test--wait (lambda () fimlsp-next-edit-last) 160)))
      (fimlsp-nextedit-test--put 'answered (and answer t))
      (fimlsp-nextedit-test--put 'error (or (plist-get answer :error)
                                              (plist-get answer :timeout)))
      (fimlsp-nextedit-test--put 'edits (length (plist-get answer :edits)))
      (fimlsp-nextedit-test--put
       'versions (vconcat (mapcar (lambda (e) (plist-get (plist-get e :textDocument) :version))
                                  (plist-get answer :edits)))))
    (fimlsp-nextedit-test--put 'version fimlsp--doc-version)
    (fimlsp-nextedit-test--put
     'server_text_is_buffer
     (equal (jsonrpc-request (fimlsp-connection) :workspace/executeCommand
                             (list :command "fimlsp.documentText"
                                   :arguments (vector fimlsp--uri)))
            (buffer-substring-no-properties (point-min) (point-max))))
    ;; A known edit: line 4's `self.h = h' becomes `self.height = height'.
    (fimlsp-next-edit-dismiss)
    (fimlsp--show-next-edit
     (list :range (list :start (list :line 3 :character 13) :end (list :line 3 :character 18))
           :text "height = height")
     fimlsp--doc-version)
    (let ((overlays (plist-get fimlsp--next-edit :overlays)))
      (fimlsp-nextedit-test--put
       'replaced (buffer-substring-no-properties (overlay-start (car overlays))
                                                 (overlay-end (car overlays))))
      (fimlsp-nextedit-test--put 'replaced_face (overlay-get (car overlays) 'face))
      (fimlsp-nextedit-test--put 'shown (substring-no-properties
                                          (overlay-get (cadr overlays) 'after-string))))
    (goto-char (point-min))
    (fimlsp-nextedit-test--put 'jumped (and (fimlsp-next-edit-jump) t))
    (fimlsp-nextedit-test--put 'point (vector (line-number-at-pos) (current-column)))
    (fimlsp-nextedit-test--put 'applied (and (fimlsp-next-edit-apply) t))
    (fimlsp-nextedit-test--put 'line4 (fimlsp-nextedit-test--line 4))
    (fimlsp-nextedit-test--put 'overlays_after_apply
                               (length (cl-remove-if-not
                                        (lambda (o) (overlay-get o 'after-string))
                                        (overlays-in (point-min) (point-max)))))
    ;; Stale: shown, then the buffer changes; it is hidden and apply refuses.
    (fimlsp--flush-changes)
    (fimlsp--show-next-edit
     (list :range (list :start (list :line 0 :character 6) :end (list :line 0 :character 9))
           :text "Rect")
     fimlsp--doc-version)
    (goto-char (point-max))
    (insert "# typed\n")
    (fimlsp-nextedit-test--put 'hidden_by_change (null fimlsp--next-edit))
    (fimlsp-nextedit-test--put 'stale_applied (and (fimlsp-next-edit-apply) t))
    (fimlsp-nextedit-test--put 'line1 (fimlsp-nextedit-test--line 1))
    ;; An accepted suggestion arms the next-edit timer too.  The suggestion
    ;; is a known answer given to the client's own receiving code (the
    ;; random-weight model's may be empty).
    (when (timerp fimlsp--next-edit-timer) (cancel-timer fimlsp--next-edit-timer))
    (setq fimlsp--next-edit-timer nil)
    (goto-char (point-max))
    (fimlsp--flush-changes)
    (fimlsp--receive (vector (list :insertText "# accepted")))
    (fimlsp-nextedit-test--put 'suggestion_shown (and (fimlsp--visible-ghost) t))
    (fimlsp-nextedit-test--command 'fimlsp-accept #'fimlsp-accept)
    (fimlsp-nextedit-test--put 'accepted_line (fimlsp-nextedit-test--line
                                               (line-number-at-pos)))
    (let ((timer fimlsp--next-edit-timer)
          (start (fimlsp-nextedit-test--events-end)))
      (fimlsp-nextedit-test--put 'armed_by_accept (timerp timer))
      (when (timerp timer)
        (setq fimlsp-next-edit-last nil)
        (fimlsp-nextedit-test--run-timer timer)
        (fimlsp-nextedit-test--put
         'accept_sent (and (fimlsp-nextedit-test--sent-since start "copilotInlineEdit") t))
        (fimlsp-nextedit-test--put
         'accept_answered (and (fimlsp-nextedit-test--wait (lambda () fimlsp-next-edit-last)
                                                           160)
                               t))))
    ;; Switched off: a change arms nothing.
    (setq fimlsp-next-edit-auto nil)
    (fimlsp-nextedit-test--command 'self-insert-command (lambda () (insert " ")))
    (fimlsp-nextedit-test--put 'armed_when_off (timerp fimlsp--next-edit-timer))
    (set-buffer-modified-p nil)
    (fimlsp-shutdown)))

(let ((status 2))
  (unwind-protect
      (condition-case err
          (progn (fimlsp-nextedit-test--run) (setq status 0))
        (error (fimlsp-nextedit-test--put 'crash (error-message-string err))))
    (let ((coding-system-for-write 'utf-8-unix))
      (with-temp-file (getenv "FIMLSP_TEST_RESULTS")
        (insert (json-encode fimlsp-nextedit-test--results))))
    (kill-emacs status)))

;;; fimlsp-nextedit-test.el ends here
