// Package scripts tests the build scripts in hack/ that tests and make targets run before
// anything else: what they say on stderr while a cold build runs for minutes, and while they wait
// for another process that holds their cache's lock.
package scripts

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	. "github.com/onsi/gomega"

	"github.com/seed-a720dd5e/clusterstack-operator/test/testenv"
)

// fakeGo stands in for go build: it reports a downloaded module and a compiled package as go
// build -v does, and writes its output only once the test creates the release file, so the test
// decides how long a build takes. Every other go command is the real one.
const fakeGo = `#!/usr/bin/env bash
if [[ "$1" == build ]]; then
  out=""
  while [[ $# -gt 0 ]]; do
    if [[ "$1" == -o ]]; then out=$2; fi
    shift
  done
  echo "go: downloading example.com/fake v1.0.0" >&2
  echo "example.com/fake/pkg" >&2
  while [[ ! -e "$FAKE_GO_RELEASE" ]]; do sleep 0.1; done
  printf '#!/bin/sh\n' >"$out"
  chmod +x "$out"
  exit 0
fi
exec "$REAL_GO" "$@"
`

// syncBuffer is a bytes.Buffer that a process writes while the test reads.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// TestBuildProgressAndLockWait runs each build script twice on one cold cache: the first builds
// (slowly, with the fake go) and must say what it builds, how long that usually takes, and how
// far it got; the second must say that it waits for the first, naming its process. Both then
// print the cache directory, and only that, on stdout.
func TestBuildProgressAndLockWait(t *testing.T) {
	realGo, err := exec.LookPath("go")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		script   string
		cacheEnv string
		skipEnv  string
		tag      string
		building []string
	}{
		{script: "envtest-assets.sh", cacheEnv: "ENVTEST_ASSETS_DIR", skipEnv: "KUBEBUILDER_ASSETS", tag: "envtest", building: []string{"kube-apiserver", "etcd"}},
		{script: "capi-managers.sh", cacheEnv: "CAPI_MANAGERS_CACHE_DIR", skipEnv: "CAPI_MANAGERS_DIR", tag: "capi", building: []string{"capi-core"}},
	} {
		t.Run(tc.script, func(t *testing.T) {
			t.Parallel()
			g := NewWithT(t)
			tmp := t.TempDir()
			bin := filepath.Join(tmp, "bin")
			g.Expect(os.Mkdir(bin, 0o755)).To(Succeed())
			g.Expect(os.WriteFile(filepath.Join(bin, "go"), []byte(fakeGo), 0o755)).To(Succeed())
			cache := filepath.Join(tmp, "cache")
			release := filepath.Join(tmp, "release")
			env := append(os.Environ(),
				"PATH="+bin+string(os.PathListSeparator)+os.Getenv("PATH"),
				"REAL_GO="+realGo,
				"FAKE_GO_RELEASE="+release,
				"PROGRESS_INTERVAL=1",
				tc.cacheEnv+"="+cache,
				tc.skipEnv+"=",
			)
			start := func() (*exec.Cmd, *bytes.Buffer, *syncBuffer) {
				cmd := exec.Command("bash", filepath.Join(testenv.RepoRoot(), "hack", tc.script))
				cmd.Env = env
				stdout, stderr := &bytes.Buffer{}, &syncBuffer{}
				cmd.Stdout, cmd.Stderr = stdout, stderr
				g.Expect(cmd.Start()).To(Succeed())
				t.Cleanup(func() {
					if cmd.ProcessState == nil {
						_ = cmd.Process.Kill()
						_ = cmd.Wait()
					}
				})
				return cmd, stdout, stderr
			}

			first, firstOut, firstErr := start()
			g.Eventually(firstErr.String).WithTimeout(time.Minute).Should(And(
				ContainSubstring(tc.tag+": building "+tc.building[0]+" into "+cache+", once: usually "),
				MatchRegexp(tc.tag+`: building \S+ into \S+, once: usually [^;]*minute`),
				MatchRegexp(tc.tag+`: still building \S+: \d+s, 1 modules downloaded, 1 packages compiled \(usually `),
			))
			for _, name := range tc.building[1:] {
				g.Expect(firstErr.String()).To(ContainSubstring(tc.tag + ": building " + name))
			}

			second, secondOut, secondErr := start()
			holder := fmt.Sprintf("process %d (bash %s)", first.Process.Pid, filepath.Join(testenv.RepoRoot(), "hack", tc.script))
			g.Eventually(secondErr.String).WithTimeout(time.Minute).Should(And(
				MatchRegexp(tc.tag+`: waiting for the lock \S+: `+regexp.QuoteMeta(holder)+` holds it since \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC, building `),
				ContainSubstring(tc.tag+": still waiting for "+holder+" to finish building"),
			))
			g.Expect(secondErr.String()).NotTo(ContainSubstring(tc.tag+": building "), "the second process builds while the first holds the lock")

			g.Expect(os.WriteFile(release, nil, 0o644)).To(Succeed())
			g.Expect(first.Wait()).To(Succeed(), firstErr.String())
			g.Expect(second.Wait()).To(Succeed(), secondErr.String())
			g.Expect(firstErr.String()).To(MatchRegexp(tc.tag + `: built ` + tc.building[0] + ` in \d+`))
			g.Expect(secondErr.String()).To(MatchRegexp(tc.tag+`: got the lock after \d+`), "second stderr")
			g.Expect(secondErr.String()).NotTo(ContainSubstring(tc.tag+": building "), "the second process rebuilt what the first built")
			for _, out := range []string{firstOut.String(), secondOut.String()} {
				g.Expect(strings.TrimSpace(out)).To(Equal(cache), "stdout must be the directory alone")
			}
		})
	}
}
