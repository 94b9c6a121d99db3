// Command openstack-double runs the OpenStack test double (Keystone v3 and Glance v2, see package
// test/openstackdouble) as a standalone server for the demo, and writes a clouds.yaml that points at it.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/seed-a720dd5e/clusterstack-operator/test/openstackdouble"
)

func main() {
	s, err := start(os.Args[1:], os.Stdout)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		fmt.Fprintln(os.Stderr, "openstack-double:", err)
		os.Exit(1)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	<-ctx.Done()
	s.Close()
}

// start parses args, starts the double and writes its clouds.yaml; the caller closes the server.
func start(args []string, stdout io.Writer) (*openstackdouble.Server, error) {
	fs := flag.NewFlagSet("openstack-double", flag.ContinueOnError)
	fs.SetOutput(stdout)
	listen := fs.String("listen", "127.0.0.1:8000", "address to listen on")
	publicURL := fs.String("public-url", "", "base URL to advertise (default: derived from -listen)")
	region := fs.String("region", openstackdouble.DefaultRegion, "region of the catalog endpoints")
	user := fs.String("user", openstackdouble.DefaultUser, "user name")
	password := fs.String("password", openstackdouble.DefaultPassword, "user password")
	project := fs.String("project", openstackdouble.DefaultProject, "project of the user")
	domain := fs.String("domain", openstackdouble.DefaultDomain, "domain of the user and project")
	tokenLifetime := fs.Duration("token-lifetime", openstackdouble.DefaultTokenLifetime, "how long tokens are valid")
	webDownload := fs.Bool("web-download", true, "offer the web-download import method")
	keepData := fs.Bool("keep-data", false, "keep image bytes in memory so they can be downloaded")
	convertTo := fs.String("convert-to", "", "disk format Glance converts images to, changing their hashes (none when empty)")
	useTLS := fs.Bool("tls", false, "serve HTTPS with a self-signed certificate (written next to the clouds.yaml)")
	cloudsYAML := fs.String("clouds-yaml", "", "path to write a clouds.yaml to (nothing written when empty)")
	cloudName := fs.String("cloud-name", openstackdouble.DefaultCloudName, "name of the cloud entry in the clouds.yaml")
	iface := fs.String("interface", "public", "catalog interface the clouds.yaml selects")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("parsing arguments: unexpected %q", fs.Args())
	}

	l, err := net.Listen("tcp", *listen)
	if err != nil {
		return nil, fmt.Errorf("listening on %s: %w", *listen, err)
	}
	opts := []openstackdouble.Option{
		openstackdouble.WithListener(l),
		openstackdouble.WithRegion(*region),
		openstackdouble.WithUser(openstackdouble.User{Name: *user, Password: *password, Domain: *domain, Projects: []string{*project}}),
		openstackdouble.WithTokenLifetime(*tokenLifetime),
		openstackdouble.WithWebDownload(*webDownload),
		openstackdouble.WithKeepImageData(*keepData),
	}
	if *publicURL != "" {
		opts = append(opts, openstackdouble.WithPublicURL(*publicURL))
	}
	if *useTLS {
		opts = append(opts, openstackdouble.WithTLS())
	}
	if *convertTo != "" {
		opts = append(opts, openstackdouble.WithFormatConversion(*convertTo))
	}
	s, err := openstackdouble.New(opts...)
	if err != nil {
		_ = l.Close()
		return nil, fmt.Errorf("starting double: %w", err)
	}

	fmt.Fprintf(stdout, "auth URL: %s\n", s.AuthURL())
	if *cloudsYAML != "" {
		o := openstackdouble.CloudsYAMLOptions{CloudName: *cloudName, Interface: *iface}
		if *useTLS {
			o.CACertFile = filepath.Join(filepath.Dir(*cloudsYAML), "openstack-double-ca.pem")
			if err := os.WriteFile(o.CACertFile, s.CACertPEM(), 0o600); err != nil {
				s.Close()
				return nil, fmt.Errorf("writing CA certificate: %w", err)
			}
		}
		content, name := s.CloudsYAML(o)
		// The file holds a password: readable by the owner only.
		if err := os.WriteFile(*cloudsYAML, []byte(content), 0o600); err != nil {
			s.Close()
			return nil, fmt.Errorf("writing clouds.yaml: %w", err)
		}
		fmt.Fprintf(stdout, "clouds.yaml: %s (cloud %q)\n", *cloudsYAML, name)
	}
	fmt.Fprintf(stdout, "token lifetime: %s, web-download: %t, started %s\n", *tokenLifetime, *webDownload, time.Now().Format(time.RFC3339))
	return s, nil
}
