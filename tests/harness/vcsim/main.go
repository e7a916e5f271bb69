// Copyright: persistent_volumes.docker contributors
// GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

// vcsim-pv: a small launcher for the govmomi vSphere simulator (Debian's
// golang-github-vmware-govmomi-dev), used by the integration tests.
// A vCenter model (simulator.VPX) with API version 7.0.0.0, TLS on 127.0.0.1.
// It writes its URL to -url-file once it serves, runs until SIGTERM/SIGINT,
// then stops and removes the datastore directories it created.
package main

import (
	"crypto/tls"
	"encoding/pem"
	"flag"
	"fmt"
	"io/ioutil"
	"log"
	"net/url"
	"os"
	"os/signal"
	"syscall"

	"github.com/vmware/govmomi/simulator"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "address to listen on (port 0: any free port)")
	urlFile := flag.String("url-file", "", "write the service URL (https://host:port/sdk) here when ready")
	certFile := flag.String("cert-file", "", "write the server's PEM certificate here")
	user := flag.String("username", "user", "the only user name accepted")
	pass := flag.String("password", "pass", "the only password accepted")
	vms := flag.Int("vms", 2, "virtual machines per host")
	flag.Parse()

	model := simulator.VPX()
	model.Machine = *vms
	model.ServiceContent.About.ApiVersion = "7.0.0.0" // not "7.0": pyvmomi falls back to 6.0
	model.ServiceContent.About.Version = "7.0.0.0"
	if err := model.Create(); err != nil {
		log.Fatalf("vcsim: create model: %v", err)
	}
	model.Service.Listen = &url.URL{Host: *listen, User: url.UserPassword(*user, *pass)}
	model.Service.TLS = new(tls.Config)
	server := model.Service.NewServer()

	u := *server.URL
	u.User = nil
	if *certFile != "" {
		block := &pem.Block{Type: "CERTIFICATE", Bytes: server.Certificate().Raw}
		if err := ioutil.WriteFile(*certFile, pem.EncodeToMemory(block), 0o644); err != nil {
			log.Fatalf("vcsim: %v", err)
		}
	}
	if *urlFile != "" {
		tmp := *urlFile + ".tmp"
		err := ioutil.WriteFile(tmp, []byte(u.String()+"\n"), 0o644)
		if err == nil {
			err = os.Rename(tmp, *urlFile)
		}
		if err != nil {
			log.Fatalf("vcsim: %v", err)
		}
	}
	fmt.Printf("vcsim: serving %s (pid %d)\n", u.String(), os.Getpid())

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	got := <-sig
	fmt.Printf("vcsim: %v, stopping\n", got)
	server.Close()
	model.Remove() // removes the datastore directories
	if *urlFile != "" {
		_ = os.Remove(*urlFile)
	}
}
