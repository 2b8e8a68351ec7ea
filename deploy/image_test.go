package deploy

import (
	"archive/tar"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/porttrace/porttrace/internal/testkit/testnet"
)

// TestImage: make image builds porttrace's image with buildah, from the
// repository's Dockerfile and no base image, and saves it as an OCI
// archive; the image's entrypoint is the static binary, which runs in a
// container (buildah run, no network) and says its version, and the CA
// bundle is there for OTLP over TLS.
func TestImage(t *testing.T) {
	testnet.RequireRoot(t)
	buildah := testnet.RequireTool(t, "buildah")
	testnet.RequireTool(t, "runc")
	image := fmt.Sprintf("localhost/porttrace:test-%d", os.Getpid())
	archive := filepath.Join(t.TempDir(), "image.tar")
	out, err := exec.Command("make", "-C", "..", "image", "IMAGE="+image, "IMAGE_TAR="+archive).CombinedOutput()
	if err != nil {
		t.Fatalf("make image: %v\n%s", err, out)
	}
	t.Cleanup(func() { exec.Command(buildah, "rmi", "-f", image).Run() })

	cfg, err := exec.Command(buildah, "inspect", "--type", "image", "--format", "{{.OCIv1.Config.Entrypoint}} {{.OCIv1.Config.Cmd}}", image).CombinedOutput()
	if err != nil || strings.TrimSpace(string(cfg)) != "[/usr/bin/porttrace] [agent --metrics-addr=:9464]" {
		t.Errorf("image config: %v %s", err, cfg)
	}
	ctr, err := exec.Command(buildah, "from", "--quiet", image).Output()
	if err != nil {
		t.Fatalf("buildah from: %v", err)
	}
	name := strings.TrimSpace(string(ctr))
	t.Cleanup(func() { exec.Command(buildah, "rm", name).Run() })
	out, err = exec.Command(buildah, "run", "--network", "none", name, "--", "/usr/bin/porttrace", "version").CombinedOutput()
	if err != nil || !strings.HasPrefix(string(out), "porttrace ") {
		t.Errorf("porttrace version in the container: %v\n%s", err, out)
	}
	out, err = exec.Command(buildah, "run", "--network", "none", name, "--", "/usr/bin/porttrace", "agent", "--help").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "--metrics-addr") {
		t.Errorf("porttrace agent --help in the container: %v\n%s", err, out)
	}

	// The archive is an OCI layout naming the image.
	f, err := os.Open(archive)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var files []string
	var index struct {
		Manifests []struct {
			Annotations map[string]string
		}
	}
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, h.Name)
		if h.Name == "index.json" {
			json.NewDecoder(tr).Decode(&index)
		}
	}
	if !slices.Contains(files, "oci-layout") || len(index.Manifests) != 1 ||
		!strings.HasSuffix(index.Manifests[0].Annotations["org.opencontainers.image.ref.name"], strings.TrimPrefix(image, "localhost/porttrace")) {
		t.Errorf("archive %v, index %+v: want an OCI layout naming %s", files, index, image)
	}
}
