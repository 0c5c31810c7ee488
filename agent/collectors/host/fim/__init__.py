"""File integrity: watch list and baseline, inotify, package-manager attribution."""
