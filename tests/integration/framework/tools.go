package framework

import (
	"fmt"
	"os"
	"path/filepath"
)

// ToolsDir is the folder hack/build-tools.sh builds the binaries into:
// $MESHD_TOOLS_CACHE, or ~/.cache/meshd/tools.
func ToolsDir() string {
	if dir := os.Getenv("MESHD_TOOLS_CACHE"); dir != "" {
		return dir
	}
	home, err := os.UserHomeDir()
	if err != nil {
		home = os.TempDir()
	}
	return filepath.Join(home, ".cache", "meshd", "tools")
}

// findTool returns the path of the named binary in dir, or a one-line error
// telling the user how to build it.
func findTool(dir, name string) (string, error) {
	path := filepath.Join(dir, name)
	st, err := os.Stat(path) // follows the build script's symlink
	if err != nil || st.IsDir() || st.Mode()&0o111 == 0 {
		return "", fmt.Errorf("%s not found in %s: run hack/build-tools.sh", name, dir)
	}
	return path, nil
}

// FindTool returns the path of the named binary built by hack/build-tools.sh.
func FindTool(name string) (string, error) { return findTool(ToolsDir(), name) }
