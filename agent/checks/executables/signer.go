package executables

import (
	"bytes"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/binary"
	"io"
	"math/big"
)

// maxCertTable bounds the Authenticode certificate table read from a PE.
const maxCertTable = 1 << 20

// peSignerNames returns the subject common name and organisation
// (distinct, non-empty) of the certificate that the PE's embedded
// Authenticode signature names as its signer. It does NOT verify the
// signature, the chain or the file digest: a tampered or self-made
// signature claims whatever it likes, so this is the "claimed signer".
// It returns nil for unsigned or unparseable files.
func peSignerNames(r io.ReaderAt, size int64) []string {
	var hdr [0x40]byte
	if _, err := r.ReadAt(hdr[:], 0); err != nil || string(hdr[:2]) != "MZ" {
		return nil
	}
	off := int64(binary.LittleEndian.Uint32(hdr[0x3c:]))
	var pe [24 + 2]byte // signature, COFF header, optional header magic
	if _, err := r.ReadAt(pe[:], off); err != nil || string(pe[:4]) != "PE\x00\x00" {
		return nil
	}
	opt := off + 24
	var dirs int64
	switch binary.LittleEndian.Uint16(pe[24:]) {
	case 0x10b: // PE32
		dirs = opt + 96
	case 0x20b: // PE32+
		dirs = opt + 112
	default:
		return nil
	}
	optSize := int64(binary.LittleEndian.Uint16(pe[4+16:]))
	if dirs+5*8 > opt+optSize {
		return nil // no security directory entry
	}
	var sec [8]byte
	if _, err := r.ReadAt(sec[:], dirs+4*8); err != nil {
		return nil
	}
	at, n := int64(binary.LittleEndian.Uint32(sec[:])), int64(binary.LittleEndian.Uint32(sec[4:]))
	if at == 0 || n < 8 || n > maxCertTable || at+n > size {
		return nil
	}
	table := make([]byte, n)
	if _, err := r.ReadAt(table, at); err != nil {
		return nil
	}
	// WIN_CERTIFICATE: dwLength, wRevision, wCertificateType, bCertificate.
	length := int64(binary.LittleEndian.Uint32(table))
	if binary.LittleEndian.Uint16(table[6:]) != 2 || length < 8 || length > n { // WIN_CERT_TYPE_PKCS_SIGNED_DATA
		return nil
	}
	return pkcs7SignerNames(table[8:length])
}

type p7ContentInfo struct {
	ContentType asn1.ObjectIdentifier
	Content     asn1.RawValue `asn1:"explicit,optional,tag:0"`
}

type p7Attribute struct {
	Type  asn1.ObjectIdentifier
	Value asn1.RawValue `asn1:"set"`
}

type p7IssuerAndSerial struct {
	IssuerName   asn1.RawValue
	SerialNumber *big.Int
}

type p7SignerInfo struct {
	Version                   int `asn1:"default:1"`
	IssuerAndSerialNumber     p7IssuerAndSerial
	DigestAlgorithm           pkix.AlgorithmIdentifier
	AuthenticatedAttributes   []p7Attribute `asn1:"optional,omitempty,tag:0"`
	DigestEncryptionAlgorithm pkix.AlgorithmIdentifier
	EncryptedDigest           []byte
	UnauthenticatedAttributes []p7Attribute `asn1:"optional,omitempty,tag:1"`
}

type p7RawCertificates struct {
	Raw asn1.RawContent
}

type p7SignedData struct {
	Version                    int                        `asn1:"default:1"`
	DigestAlgorithmIdentifiers []pkix.AlgorithmIdentifier `asn1:"set"`
	ContentInfo                p7ContentInfo
	Certificates               p7RawCertificates `asn1:"optional,tag:0"`
	CRLs                       asn1.RawValue     `asn1:"optional,tag:1"`
	SignerInfos                []p7SignerInfo    `asn1:"set"`
}

var oidSignedData = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 7, 2}

// pkcs7SignerNames parses a PKCS#7 SignedData blob far enough to find the
// first signer's certificate, and returns its subject CN and O.
func pkcs7SignerNames(der []byte) []string {
	var ci p7ContentInfo
	if _, err := asn1.Unmarshal(der, &ci); err != nil || !ci.ContentType.Equal(oidSignedData) {
		return nil
	}
	var sd p7SignedData
	if _, err := asn1.Unmarshal(ci.Content.Bytes, &sd); err != nil || len(sd.SignerInfos) == 0 {
		return nil
	}
	var certsRaw asn1.RawValue
	if len(sd.Certificates.Raw) == 0 {
		return nil
	}
	if _, err := asn1.Unmarshal(sd.Certificates.Raw, &certsRaw); err != nil {
		return nil
	}
	certs, err := x509.ParseCertificates(certsRaw.Bytes)
	if err != nil {
		return nil
	}
	want := sd.SignerInfos[0].IssuerAndSerialNumber
	for _, c := range certs {
		if want.SerialNumber == nil || c.SerialNumber.Cmp(want.SerialNumber) != 0 || !bytes.Equal(c.RawIssuer, want.IssuerName.FullBytes) {
			continue
		}
		var out []string
		if cn := c.Subject.CommonName; cn != "" {
			out = append(out, cn)
		}
		for _, o := range c.Subject.Organization {
			if o != "" && (len(out) == 0 || o != out[0]) {
				out = append(out, o)
				break
			}
		}
		return out
	}
	return nil
}
