package ca

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"
)

// PEM block types.
const (
	certificateBlock  = "CERTIFICATE"
	rsaKeyBlock       = "RSA PRIVATE KEY"
	ecKeyBlock        = "EC PRIVATE KEY"
	pkcs8KeyBlock     = "PRIVATE KEY"
	encryptedKeyBlock = "ENCRYPTED PRIVATE KEY"
)

// decodeCertificate returns the first certificate in data.
func decodeCertificate(data []byte) (*x509.Certificate, error) {
	certs, err := decodeCertificates(data)
	if err != nil {
		return nil, err
	}
	return certs[0], nil
}

// decodeCertificates returns every certificate in data, in order, skipping
// blocks of other types. It fails if there is none.
func decodeCertificates(data []byte) ([]*x509.Certificate, error) {
	var certs []*x509.Certificate
	for rest := data; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type != certificateBlock {
			continue
		}
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("parse certificate %d: %w", len(certs)+1, err)
		}
		certs = append(certs, cert)
	}
	if len(certs) == 0 {
		return nil, errors.New("no PEM CERTIFICATE block found")
	}
	return certs, nil
}

// decodePrivateKey returns the first private key in data and its PEM block.
// Blocks of other types, such as "EC PARAMETERS", are skipped.
func decodePrivateKey(data []byte) (crypto.Signer, *pem.Block, error) {
	for rest := data; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type == encryptedKeyBlock || strings.Contains(block.Headers["Proc-Type"], "ENCRYPTED") {
			return nil, nil, errors.New("private key is encrypted; supply it unencrypted")
		}
		var (
			key any
			err error
		)
		switch block.Type {
		case rsaKeyBlock:
			key, err = x509.ParsePKCS1PrivateKey(block.Bytes)
			if err != nil {
				return nil, nil, fmt.Errorf("parse PKCS#1 RSA private key: %w", err)
			}
		case ecKeyBlock:
			key, err = x509.ParseECPrivateKey(block.Bytes)
			if err != nil {
				return nil, nil, fmt.Errorf("parse SEC1 EC private key: %w", err)
			}
		case pkcs8KeyBlock:
			key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
			if err != nil {
				return nil, nil, fmt.Errorf("parse PKCS#8 private key: %w", err)
			}
		default:
			continue
		}
		signer, ok := key.(crypto.Signer)
		if !ok {
			return nil, nil, fmt.Errorf("private key of type %T cannot sign certificates", key)
		}
		return signer, block, nil
	}
	return nil, nil, fmt.Errorf("no PEM private key block found (expected %s, %s or %s)",
		rsaKeyBlock, ecKeyBlock, pkcs8KeyBlock)
}

// encodeCertificate PEM-encodes a DER certificate.
func encodeCertificate(der []byte) []byte {
	return encodeBlock(certificateBlock, der)
}

// encodeECPrivateKey PEM-encodes key as SEC1 "EC PRIVATE KEY", the form
// istiod's plug-in CA reads.
func encodeECPrivateKey(key *ecdsa.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("marshal EC private key: %w", err)
	}
	return encodeBlock(ecKeyBlock, der), nil
}

// encodeBlock PEM-encodes der as one block of the given type, without headers.
func encodeBlock(blockType string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: blockType, Bytes: der})
}
