// Package config is autofix's configuration in one place: the defaults, the YAML file,
// the AUTOFIX_* environment variables (and the command's flags, applied by cmd), in
// that order of precedence from weakest to strongest, and one Validate that names the
// field at fault. Packages take typed options built from it; none reads the
// environment or flags itself.
package config
