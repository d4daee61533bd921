package store

import (
	"fmt"
	"time"

	badger "github.com/dgraph-io/badger/v4"
)

// RotateKey re-encrypts the store's key registry (which holds the data keys)
// from oldKey to newKey. Only the registry is rewritten, so it is quick at
// any store size. The store must not be open.
func RotateKey(dir string, oldKey, newKey []byte) error {
	opt := badger.KeyRegistryOptions{
		Dir: dir, ReadOnly: true, EncryptionKey: oldKey,
		EncryptionKeyRotationDuration: 30 * 24 * time.Hour,
	}
	kr, err := badger.OpenKeyRegistry(opt)
	if err != nil {
		return fmt.Errorf("store: open key registry with the current key: %w", err)
	}
	defer kr.Close()
	opt.EncryptionKey = newKey
	if err := badger.WriteKeyRegistry(kr, opt); err != nil {
		return fmt.Errorf("store: rewrite key registry: %w", err)
	}
	return nil
}
