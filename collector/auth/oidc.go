package auth

// OpenID Connect sign-in (Google Workspace, Microsoft Entra ID or any
// OIDC provider): the authorization-code flow with PKCE (S256), state and
// nonce. The state, nonce and PKCE verifier travel in a short-lived cookie
// sealed with AES-GCM under a key that lives only in this process, so
// nothing about a sign-in in progress is stored server-side. The ID token is
// verified with go-oidc (signature from the provider's JWKS, issuer, audience
// = client ID, expiry) and then here (nonce, azp, email_verified, optional
// domain/tenant). The e-mail address is matched, case-insensitively, to an
// existing Vigil account (Service.UserByEmail): nothing is provisioned, the
// account's role decides what the person may see. The console's HTTP
// handlers (collector/console/oidc.go) drive the flow.

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"
)

// OIDCConfig turns on sign-in with an OpenID Connect provider.
type OIDCConfig struct {
	// Issuer is the provider's issuer URL, exactly as its discovery document
	// names it: https://accounts.google.com, or
	// https://login.microsoftonline.com/<tenant id>/v2.0 for Entra ID.
	Issuer       string
	ClientID     string
	ClientSecret string
	// RedirectURL is this console's callback as registered with the
	// provider: <console URL>/api/v1/oidc/callback.
	RedirectURL string
	// Name is shown on the button: "Sign in with <Name>". Default: Google or
	// Microsoft from the issuer, else "single sign-on".
	Name string
	// AllowedDomain, if set, must equal the token's hd claim (the Google
	// Workspace domain) or tid claim (the Entra ID tenant ID).
	AllowedDomain string
	// HTTPClient reaches the provider (discovery, keys, token); default a
	// client with a 15 s timeout.
	HTTPClient *http.Client
}

// OIDCFlowTTL bounds how long a sign-in at the provider may take.
const OIDCFlowTTL = 10 * time.Minute

// OIDCCookie carries the sealed OIDCFlow between login and callback.
const OIDCCookie = "vigil_oidc"

// OIDC is a configured provider.
type OIDC struct {
	cfg    OIDCConfig
	now    func() time.Time
	aead   cipher.AEAD
	secure bool // the state cookie is Secure (the callback is https)

	mu       sync.Mutex
	provider *oidc.Provider
	verifier *oidc.IDTokenVerifier
	oauth    *oauth2.Config
}

// NewOIDC checks cfg; the provider is discovered at the first sign-in.
func NewOIDC(cfg OIDCConfig, now func() time.Time) (*OIDC, error) {
	cfg.Issuer = strings.TrimSpace(cfg.Issuer)
	if cfg.Issuer == "" || cfg.ClientID == "" {
		return nil, errors.New("oidc: the issuer and the client ID are required")
	}
	iss, err := url.Parse(cfg.Issuer)
	if err != nil || iss.Host == "" || !(iss.Scheme == "https" || iss.Scheme == "http" && isLoopback(iss.Hostname())) {
		return nil, fmt.Errorf("oidc: issuer %q: want an https:// URL", cfg.Issuer)
	}
	red, err := url.Parse(cfg.RedirectURL)
	if err != nil || red.Host == "" || (red.Scheme != "https" && red.Scheme != "http") || !strings.HasSuffix(red.Path, "/api/v1/oidc/callback") {
		return nil, fmt.Errorf("oidc: redirect URL %q: want <console URL>/api/v1/oidc/callback", cfg.RedirectURL)
	}
	if cfg.Name == "" {
		switch {
		case iss.Host == "accounts.google.com":
			cfg.Name = "Google"
		case iss.Host == "login.microsoftonline.com":
			cfg.Name = "Microsoft"
		default:
			cfg.Name = "single sign-on"
		}
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{Timeout: 15 * time.Second}
	}
	if now == nil {
		now = time.Now
	}
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return nil, err
	}
	block, _ := aes.NewCipher(key)
	aead, _ := cipher.NewGCM(block)
	return &OIDC{cfg: cfg, now: now, aead: aead, secure: red.Scheme == "https"}, nil
}

// Name is the provider's name for the button.
func (o *OIDC) Name() string { return o.cfg.Name }

// Secure: the callback is https, so the cookies of the flow are Secure.
func (o *OIDC) Secure() bool { return o.secure }

// AllowedDomain is OIDCConfig.AllowedDomain.
func (o *OIDC) AllowedDomain() string { return o.cfg.AllowedDomain }

// ClientID is OIDCConfig.ClientID.
func (o *OIDC) ClientID() string { return o.cfg.ClientID }

// HTTPClient reaches the provider.
func (o *OIDC) HTTPClient() *http.Client { return o.cfg.HTTPClient }

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Setup discovers the provider on first use (and again after a failure), so
// the collector starts even when the provider cannot be reached.
func (o *OIDC) Setup(ctx context.Context) (*oauth2.Config, *oidc.IDTokenVerifier, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.provider != nil {
		return o.oauth, o.verifier, nil
	}
	ctx, cancel := context.WithTimeout(oidc.ClientContext(ctx, o.cfg.HTTPClient), 15*time.Second)
	defer cancel()
	p, err := oidc.NewProvider(ctx, o.cfg.Issuer)
	if err != nil {
		return nil, nil, fmt.Errorf("discover %s: %w", o.cfg.Issuer, err)
	}
	// Client authentication as the provider says it takes it (the default is
	// client_secret_basic), rather than oauth2's probe, which would spend the
	// one-time code on a refused first attempt.
	var meta struct {
		AuthMethods []string `json:"token_endpoint_auth_methods_supported"`
	}
	p.Claims(&meta)
	ep := p.Endpoint()
	ep.AuthStyle = oauth2.AuthStyleInHeader
	if len(meta.AuthMethods) > 0 && !slices.Contains(meta.AuthMethods, "client_secret_basic") &&
		slices.Contains(meta.AuthMethods, "client_secret_post") {
		ep.AuthStyle = oauth2.AuthStyleInParams
	}
	o.provider = p
	o.oauth = &oauth2.Config{ClientID: o.cfg.ClientID, ClientSecret: o.cfg.ClientSecret, Endpoint: ep,
		RedirectURL: o.cfg.RedirectURL, Scopes: []string{oidc.ScopeOpenID, "email", "profile"}}
	// One verifier, so the provider's keys are fetched once and cached
	// (re-fetched when a token names a key not seen yet).
	o.verifier = p.VerifierContext(oidc.ClientContext(context.Background(), o.cfg.HTTPClient),
		&oidc.Config{ClientID: o.cfg.ClientID, Now: o.now})
	return o.oauth, o.verifier, nil
}

// OIDCFlow is what the state cookie carries between login and callback.
type OIDCFlow struct {
	State    string `json:"s"`
	Nonce    string `json:"n"`
	Verifier string `json:"v"`
	Expires  int64  `json:"e"`
}

// NewFlow starts a sign-in: fresh state, nonce and PKCE verifier.
func (o *OIDC) NewFlow() OIDCFlow {
	return OIDCFlow{State: RandomToken(), Nonce: RandomToken(), Verifier: oauth2.GenerateVerifier(),
		Expires: o.now().Add(OIDCFlowTTL).Unix()}
}

// Seal encrypts a flow for the cookie.
func (o *OIDC) Seal(f OIDCFlow) string {
	plain, _ := json.Marshal(f)
	nonce := make([]byte, o.aead.NonceSize())
	rand.Read(nonce)
	return base64.RawURLEncoding.EncodeToString(o.aead.Seal(nonce, nonce, plain, []byte(OIDCCookie)))
}

// Open decrypts a cookie this process sealed and checks it has not expired.
func (o *OIDC) Open(v string, now time.Time) (OIDCFlow, error) {
	var f OIDCFlow
	b, err := base64.RawURLEncoding.DecodeString(v)
	if err != nil || len(b) < o.aead.NonceSize() {
		return f, errors.New("malformed state cookie")
	}
	plain, err := o.aead.Open(nil, b[:o.aead.NonceSize()], b[o.aead.NonceSize():], []byte(OIDCCookie))
	if err != nil {
		return f, errors.New("state cookie not sealed by this collector (restarted, or forged)")
	}
	if err := json.Unmarshal(plain, &f); err != nil {
		return f, err
	}
	if now.Unix() > f.Expires {
		return f, errors.New("sign-in took longer than 10 minutes")
	}
	return f, nil
}

// CheckState compares the callback's state with the flow's.
func (f OIDCFlow) CheckState(state string) bool {
	return state != "" && subtle.ConstantTimeCompare([]byte(state), []byte(f.State)) == 1
}

// OIDCClaims are the ID token claims used beyond those go-oidc checks.
type OIDCClaims struct {
	Email         string          `json:"email"`
	EmailVerified json.RawMessage `json:"email_verified"`
	// Entra ID has no email_verified; its optional claim xms_edov says the
	// e-mail domain's owner is verified.
	EmailDomainVerified json.RawMessage `json:"xms_edov"`
	AZP                 string          `json:"azp"`
	HD                  string          `json:"hd"`  // Google Workspace domain
	TID                 string          `json:"tid"` // Entra ID tenant
}

// Verified: the provider vouches for the e-mail address.
func (c OIDCClaims) Verified() bool { return isTrue(c.EmailVerified) || isTrue(c.EmailDomainVerified) }

// isTrue accepts a JSON true or "true" (some providers send strings).
func isTrue(v json.RawMessage) bool {
	s := strings.TrimSpace(string(v))
	return s == "true" || s == `"true"` || s == `"True"`
}
