// Command standin-sds (a stand-in, named so) plays pilot-agent's SDS server for the lab's waypoint (and sidecar) Envoys.
//
// istiod sends a waypoint clusters and listeners whose TLS names the SDS secrets "default" (the
// workload certificate) and "ROOTCA" (the trust bundle), fetched from the `sds-grpc` cluster that
// pilot-agent's bootstrap points at its own SDS socket, with no fetch timeout: without an answer
// the clusters warm forever and Envoy never asks for listeners. The lab has no CA and no
// pilot-agent, so this serves one self-signed certificate (the lab's gateway certificate) under
// every requested name: enough for Envoy to accept and run the configuration, not to speak mTLS
// to anything. Plain gRPC on a TCP address of the node; one response per request, ACKs ignored.
package main

import (
	"flag"
	"fmt"
	"log"
	"net"
	"os"
	"strings"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	tls "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	secret "github.com/envoyproxy/go-control-plane/envoy/service/secret/v3"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/anypb"
)

const secretType = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret"

type server struct {
	secret.UnimplementedSecretDiscoveryServiceServer
	cert, key []byte
}

func inline(b []byte) *core.DataSource {
	return &core.DataSource{Specifier: &core.DataSource_InlineBytes{InlineBytes: b}}
}

// secretFor: a trust bundle for ROOTCA-like names (as pilot-agent names them), else a certificate.
func (s *server) secretFor(name string) *tls.Secret {
	if name == "ROOTCA" || strings.HasPrefix(name, "file-root:") {
		return &tls.Secret{Name: name, Type: &tls.Secret_ValidationContext{
			ValidationContext: &tls.CertificateValidationContext{TrustedCa: inline(s.cert)}}}
	}
	return &tls.Secret{Name: name, Type: &tls.Secret_TlsCertificate{TlsCertificate: &tls.TlsCertificate{
		CertificateChain: inline(s.cert), PrivateKey: inline(s.key)}}}
}

func (s *server) StreamSecrets(stream secret.SecretDiscoveryService_StreamSecretsServer) error {
	nonce := 0
	for {
		req, err := stream.Recv()
		if err != nil {
			return err
		}
		if req.ResponseNonce != "" && req.ErrorDetail == nil {
			continue // an ACK: the secrets never change
		}
		resp := &discovery.DiscoveryResponse{VersionInfo: "1", TypeUrl: secretType}
		for _, name := range req.ResourceNames {
			res, err := anypb.New(s.secretFor(name))
			if err != nil {
				return err
			}
			resp.Resources = append(resp.Resources, res)
		}
		nonce++
		resp.Nonce = fmt.Sprint(nonce)
		if err := stream.Send(resp); err != nil {
			return err
		}
	}
}

func (s *server) DeltaSecrets(secret.SecretDiscoveryService_DeltaSecretsServer) error {
	return fmt.Errorf("delta SDS is not served by the lab")
}

func main() {
	addr := flag.String("listen", "198.18.64.1:15400", "address to serve SDS on")
	certFile := flag.String("cert", "", "PEM certificate")
	keyFile := flag.String("key", "", "PEM private key")
	flag.Parse()
	cert, err := os.ReadFile(*certFile)
	if err != nil {
		log.Fatal(err)
	}
	key, err := os.ReadFile(*keyFile)
	if err != nil {
		log.Fatal(err)
	}
	lis, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Fatal(err)
	}
	g := grpc.NewServer()
	secret.RegisterSecretDiscoveryServiceServer(g, &server{cert: cert, key: key})
	log.Printf("serving SDS on %s", *addr)
	log.Fatal(g.Serve(lis))
}
