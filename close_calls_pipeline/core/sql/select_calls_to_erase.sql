-- The calls an erasure names in `erase_selection` (kind, value): by id ('id'), by lead id
-- ('lead'), or by a phone number ('phone', as normalised to E.164 and as its hash) that any of
-- its phone fields holds (a formatted field compared without its separators).
SELECT DISTINCT c.id
FROM close.calls AS c
JOIN erase_selection AS s
  ON (s.kind = 'id' AND c.id = s.value)
  OR (s.kind = 'lead' AND c.lead_id = s.value)
  OR (s.kind = 'phone' AND s.value IN (
        c.phone, c.local_phone, c.remote_phone,
        regexp_replace(c.local_phone_formatted, '[\s\-./()\[\]]', '', 'g'),
        regexp_replace(c.remote_phone_formatted, '[\s\-./()\[\]]', '', 'g'),
        c.local_phone_formatted, c.remote_phone_formatted))
