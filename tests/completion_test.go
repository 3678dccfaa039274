//go:build unix

package tests

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// commands lists sockmux's commands as its completion offers them at the
// top level.
func commands(t *testing.T) []string {
	t.Helper()
	code, out := run(t, 10*time.Second, "", "--generate-bash-completion")
	require.Equal(t, 0, code, out)
	cmds := strings.Fields(out)
	require.Subset(t, cmds, []string{"link", "status", "test-link", "cable", "completion", "man"})
	return cmds
}

// completionScript runs sockmux completion SHELL and saves the script.
func completionScript(t *testing.T, shell string) (path, text string) {
	t.Helper()
	code, out := run(t, 10*time.Second, "completion", shell)
	require.Equal(t, 0, code, out)
	require.NotEmpty(t, strings.TrimSpace(out), shell)
	path = filepath.Join(t.TempDir(), "sockmux."+shell)
	require.NoError(t, os.WriteFile(path, []byte(out), 0o600))
	return path, out
}

func TestCompletionBash(t *testing.T) {
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Skip("no bash")
	}
	script, _ := completionScript(t, "bash")
	out, err := exec.Command(bash, "-n", script).CombinedOutput()
	require.NoError(t, err, "bash -n: %s", out)

	// Drive the completion function as bash would, with sockmux on PATH.
	complete := func(words ...string) []string {
		t.Helper()
		prog := `source "$1"; shift; COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); _sockmux_complete; printf '%s\n' "${COMPREPLY[@]}"`
		cmd := exec.Command(bash, append([]string{"-c", prog, "bash", script}, words...)...)
		cmd.Env = append(os.Environ(), "PATH="+filepath.Dir(bin)+":"+os.Getenv("PATH"))
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, "%s", out)
		return strings.Fields(string(out))
	}
	assert.Equal(t, []string{"test-link"}, complete("sockmux", "test-"))
	assert.Subset(t, complete("sockmux", ""), commands(t))
	assert.ElementsMatch(t, []string{"--comm", "--comm-glob", "--commin", "--commout"}, complete("sockmux", "link", "--comm"))
	assert.ElementsMatch(t, []string{"--seconds", "-s"}, filter(complete("sockmux", "test-link", "-"), "--seconds", "-s"))
	assert.Empty(t, complete("sockmux", "link", "--comm", ""), "a path: bash completes file names")
	assert.ElementsMatch(t, []string{"bash", "zsh", "fish"}, complete("sockmux", "completion", ""))
	assert.Equal(t, []string{"--json"}, complete("sockmux", "status", "--js"))
}

// filter keeps the members of s that are among keep.
func filter(s []string, keep ...string) []string {
	var out []string
	for _, x := range s {
		for _, k := range keep {
			if x == k {
				out = append(out, x)
			}
		}
	}
	return out
}

func TestCompletionZsh(t *testing.T) {
	script, text := completionScript(t, "zsh")
	assert.True(t, strings.HasPrefix(text, "#compdef sockmux\n"), "loadable from $fpath")
	assert.Contains(t, text, "--generate-bash-completion")
	zsh, err := exec.LookPath("zsh")
	if err != nil {
		t.Skip("no zsh to check the script with")
	}
	out, err := exec.Command(zsh, "-n", script).CombinedOutput()
	require.NoError(t, err, "zsh -n: %s", out)

	// Drive the completion function with zsh's completion builtins
	// stubbed: _describe prints the candidates, _files says FILES.
	complete := func(words ...string) []string {
		t.Helper()
		prog := `compdef(){}; _describe(){ shift; print -l -- "${(@P)1}"; }; _files(){ print FILES; }; ` +
			`source "$1"; shift; words=("$@"); CURRENT=$#; _sockmux`
		cmd := exec.Command(zsh, append([]string{"-c", prog, "zsh", script}, words...)...)
		cmd.Env = append(os.Environ(), "PATH="+filepath.Dir(bin)+":"+os.Getenv("PATH"))
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, "%s", out)
		return strings.Fields(string(out))
	}
	assert.Subset(t, complete("sockmux", ""), commands(t))
	assert.ElementsMatch(t, []string{"--comm", "--comm-glob", "--commin", "--commout"}, complete("sockmux", "link", "--comm"))
	assert.Equal(t, []string{"FILES"}, complete("sockmux", "link", "--comm", ""))
	assert.ElementsMatch(t, []string{"bash", "zsh", "fish"}, complete("sockmux", "completion", ""))
}

func TestCompletionFish(t *testing.T) {
	script, text := completionScript(t, "fish")
	for _, c := range commands(t) {
		assert.Contains(t, text, "-a '"+c+"'", "fish completes the command %s", c)
	}
	assert.Regexp(t, `(?m)^complete -c sockmux -n '__fish_seen_subcommand_from link' -l comm -r `, text, "--comm completes file names")
	assert.Regexp(t, `(?m)^complete -c sockmux -n '__fish_seen_subcommand_from test-link' -f -l seconds -s s -r `, text)
	fish, err := exec.LookPath("fish")
	if err != nil {
		t.Skip("no fish to check the script with")
	}
	out, err := exec.Command(fish, "-n", script).CombinedOutput()
	require.NoError(t, err, "fish -n: %s", out)
	out, err = exec.Command(fish, "--no-config", "-c", `source $argv[1]; complete -C "sockmux test-"; complete -C "sockmux test-link --sec"`, script).CombinedOutput()
	require.NoError(t, err, "%s", out)
	assert.Regexp(t, `(?m)^test-link\t`, string(out))
	assert.Regexp(t, `(?m)^--seconds\t`, string(out))
}

func TestCompletionBadShell(t *testing.T) {
	for _, args := range [][]string{{"completion"}, {"completion", "ksh"}, {"completion", "bash", "zsh"}} {
		code, out := run(t, 10*time.Second, args...)
		oneLineError(t, code, out, "bash, zsh", args)
	}
}

// TestManPage: sockmux man is a roff page of section 1 with a section for
// every command, that groff formats without a warning.
func TestManPage(t *testing.T) {
	code, page := run(t, 10*time.Second, "man")
	require.Equal(t, 0, code, page)
	assert.Regexp(t, `(?m)^\.TH sockmux 1$`, page)
	for _, c := range commands(t) {
		assert.Regexp(t, `(?m)^\.SH `+regexp.QuoteMeta(c)+`$`, page, "the page has the command %s", c)
	}
	for _, flag := range []string{`--comm`, `--seconds`, `--watch`, `--baud`} {
		assert.Contains(t, page, `\fB`+flag, "the page has the flag %s", flag)
	}
	code, out := run(t, 10*time.Second, "man", "extra")
	oneLineError(t, code, out, `unexpected argument "extra"`, []string{"man", "extra"})

	groff, err := exec.LookPath("groff")
	if err != nil {
		t.Skip("no groff to format the page with")
	}
	cmd := exec.Command(groff, "-man", "-Tutf8", "-ww", "-z")
	cmd.Stdin = strings.NewReader(page)
	out2, err := cmd.CombinedOutput()
	require.NoError(t, err, "%s", out2)
	assert.Empty(t, strings.TrimSpace(string(out2)), "groff warnings")
}
