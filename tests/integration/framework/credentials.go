package framework

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"

	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// ServiceAccountIssuer is the issuer the API server puts in, and requires of,
// service-account tokens; it is also one of the API audiences.
const ServiceAccountIssuer = "https://kubernetes.default.svc.cluster.local"

// AdminUser is the user the admin token authenticates as (group system:masters).
const AdminUser = "meshd-test-admin"

// writeServiceAccountKey generates the key pair the API server signs and
// verifies service-account tokens with, and writes it (PKCS#8 private key,
// PKIX public key) into dir.
func writeServiceAccountKey(dir string) (key *rsa.PrivateKey, keyFile, pubFile string, err error) {
	key, err = rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, "", "", fmt.Errorf("generate service-account key: %w", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, "", "", fmt.Errorf("encode service-account key: %w", err)
	}
	pubDER, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		return nil, "", "", fmt.Errorf("encode service-account public key: %w", err)
	}
	keyFile = filepath.Join(dir, "sa.key")
	pubFile = filepath.Join(dir, "sa.pub")
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		return nil, "", "", fmt.Errorf("write service-account key: %w", err)
	}
	if err := os.WriteFile(pubFile, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER}), 0o644); err != nil {
		return nil, "", "", fmt.Errorf("write service-account public key: %w", err)
	}
	return key, keyFile, pubFile, nil
}

// writeTokenFile writes a --token-auth-file granting a fresh random token to
// AdminUser in group system:masters, and returns the file and the token.
func writeTokenFile(dir string) (path, token string, err error) {
	buf := make([]byte, 24)
	if _, err := rand.Read(buf); err != nil {
		return "", "", fmt.Errorf("generate admin token: %w", err)
	}
	token = hex.EncodeToString(buf)
	path = filepath.Join(dir, "tokens.csv")
	// Format: token,user,uid,"group1,group2".
	line := fmt.Sprintf("%s,%s,%s,\"system:masters\"\n", token, AdminUser, AdminUser)
	if err := os.WriteFile(path, []byte(line), 0o600); err != nil {
		return "", "", fmt.Errorf("write token file: %w", err)
	}
	return path, token, nil
}

// readServingCA reads the certificate the API server generated into its
// --cert-dir and returns the CA certificate(s) to trust it by. It fails while
// the file is absent or not completely written.
func readServingCA(certFile string) ([]byte, error) {
	data, err := os.ReadFile(certFile)
	if err != nil {
		return nil, err
	}
	var cas []byte
	var certs []*x509.Certificate
	for rest := data; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", certFile, err)
		}
		certs = append(certs, cert)
		if cert.IsCA {
			cas = append(cas, pem.EncodeToMemory(block)...)
		}
	}
	switch {
	case len(cas) > 0:
		return cas, nil
	case len(certs) == 1 && certs[0].CheckSignatureFrom(certs[0]) == nil:
		// A lone self-signed serving certificate is its own trust anchor.
		return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: certs[0].Raw}), nil
	default:
		return nil, fmt.Errorf("%s: no CA certificate (yet)", certFile)
	}
}

// writeKubeconfig writes a kubeconfig for host that verifies the server with
// caPEM and authenticates with the admin token.
func writeKubeconfig(path, host string, caPEM []byte, token string) error {
	const name = "meshd-test"
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters[name] = &clientcmdapi.Cluster{Server: host, CertificateAuthorityData: caPEM}
	cfg.AuthInfos[name] = &clientcmdapi.AuthInfo{Token: token}
	cfg.Contexts[name] = &clientcmdapi.Context{Cluster: name, AuthInfo: name, Namespace: "default"}
	cfg.CurrentContext = name
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		return fmt.Errorf("write kubeconfig: %w", err)
	}
	return nil
}
