-- Consent per profile and purpose (the analysts' view): every profile's, folded as the profile API folds it
-- (profile_consent_of, schemas/consent.py): `granted` 1 or 0.
CREATE VIEW {db}.profile_consent AS
SELECT * FROM {db}.profile_consent_of(keys = [])
