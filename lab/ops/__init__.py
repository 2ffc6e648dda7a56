"""Operations on the guest: deploy and teardown, status, validation with the real tools, leftovers."""
