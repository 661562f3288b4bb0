;;; fimlsp-lint.el --- package-lint on fimlsp.el, offline  -*- lexical-binding: t; -*-

;;; Commentary:

;; Run by tests/editors/test_emacs.py as
;;
;;   emacs --batch -Q -L <package-lint> -L <let-alist> -l fimlsp-lint.el FILE
;;
;; with Debian's package-lint 0.16 (elpa-package-lint).  Two things it
;; cannot know here are supplied or set aside, and said so:
;;   - GNU ELPA's index is not reachable, so the archive entry of the one
;;     dependency, jsonrpc (a GNU ELPA package), is given to it;
;;   - 0.16 predates Emacs 28's release and warns that depending on
;;     (emacs "28.1") "makes the package uninstallable in all released
;;     Emacs versions": that one warning is reported as ignored.
;; Every other error or warning is printed as "PROBLEM: ..." and makes
;; Emacs exit with status 1.

;;; Code:

(require 'package)
(require 'package-lint)

(package-initialize)
(setq package-archive-contents
      (list (list 'jsonrpc (package-desc-create :name 'jsonrpc :version '(1 0 25)
                                                :kind 'single :archive "gnu"))))

(let ((file (expand-file-name (car command-line-args-left)))
      (problems 0))
  (with-temp-buffer
    (insert-file-contents file t)
    (emacs-lisp-mode)
    (pcase-dolist (`(,line ,column ,type ,text) (package-lint-buffer))
      (if (and (eq type 'warning)
               (string-match-p "uninstallable in all released Emacs versions" text)
               (version<= "28" emacs-version))
          (message "IGNORED (package-lint %s predates Emacs 28): %s:%d:%d: %s"
                   (file-name-nondirectory (directory-file-name (file-name-directory (locate-library "package-lint")))) (file-name-nondirectory file) line column text)
        (setq problems (1+ problems))
        (message "PROBLEM: %s:%d:%d: %s: %s"
                 (file-name-nondirectory file) line column type text))))
  (message "package-lint: %d problems" problems)
  (kill-emacs (if (zerop problems) 0 1)))

;;; fimlsp-lint.el ends here
