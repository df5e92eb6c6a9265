-- consent.purpose_key: dotted lowercase keys such as 'marketing.email'.
-- The C side is src/purpose_key.c.

-- Shell type first, so the I/O functions can name it.
CREATE TYPE consent.purpose_key;

CREATE FUNCTION consent.purpose_key_in(cstring)
RETURNS consent.purpose_key
AS 'MODULE_PATHNAME', 'purpose_key_in'
LANGUAGE C STRICT IMMUTABLE PARALLEL SAFE;

CREATE FUNCTION consent.purpose_key_out(consent.purpose_key)
RETURNS cstring
AS 'MODULE_PATHNAME', 'purpose_key_out'
LANGUAGE C STRICT IMMUTABLE PARALLEL SAFE;

CREATE FUNCTION consent.purpose_key_recv(internal)
RETURNS consent.purpose_key
AS 'MODULE_PATHNAME', 'purpose_key_recv'
LANGUAGE C STRICT IMMUTABLE PARALLEL SAFE;

CREATE FUNCTION consent.purpose_key_send(consent.purpose_key)
RETURNS bytea
AS 'MODULE_PATHNAME', 'purpose_key_send'
LANGUAGE C STRICT IMMUTABLE PARALLEL SAFE;

-- Same physical layout as text (variable length, int4 alignment), which is
-- what makes the binary-coercible cast to text below sound.
--
-- STORAGE = main rather than plain: plain forbids the 1-byte short varlena
-- header on disk, so every key would pay a 4-byte header plus alignment
-- padding.  Rather than extended: a key is at most 63 bytes, and moving one
-- out of line would save nothing while costing a TOAST fetch on every
-- comparison; main keeps keys inline unless nothing else can be done.  The C
-- functions detoast every argument (PG_DETOAST_DATUM_PACKED), so a compressed
-- or out-of-line key is still read correctly.
--
-- Category S (string), with an assignment cast to text (see Casts below);
-- text stays the preferred type of the category.
CREATE TYPE consent.purpose_key (
	INPUT = consent.purpose_key_in,
	OUTPUT = consent.purpose_key_out,
	RECEIVE = consent.purpose_key_recv,
	SEND = consent.purpose_key_send,
	INTERNALLENGTH = VARIABLE,
	ALIGNMENT = int4,
	STORAGE = main,
	CATEGORY = 'S',
	PREFERRED = false,
	COLLATABLE = false
);

COMMENT ON TYPE consent.purpose_key IS
'key of a purpose: 1 to 8 dot-separated segments of [a-z][a-z0-9_]*, at most 63 bytes, e.g. marketing.email';
COMMENT ON FUNCTION consent.purpose_key_in(cstring) IS
'text input of consent.purpose_key; rejects invalid keys with SQLSTATE 22P02';
COMMENT ON FUNCTION consent.purpose_key_out(consent.purpose_key) IS
'text output of consent.purpose_key';
COMMENT ON FUNCTION consent.purpose_key_recv(internal) IS
'binary input of consent.purpose_key (the key as text); rejects invalid keys with SQLSTATE 22P02';
COMMENT ON FUNCTION consent.purpose_key_send(consent.purpose_key) IS
'binary output of consent.purpose_key (the key as text)';

-- Comparison support.  Order is bytewise, which for purpose keys is also
-- segment-by-segment order with each key right before its descendants.
-- These functions raise no error that could reveal their arguments, hence
-- LEAKPROOF: the planner may then push them below row-level security quals
-- and security-barrier views.

CREATE FUNCTION consent.purpose_key_eq(consent.purpose_key, consent.purpose_key)
RETURNS boolean
AS 'MODULE_PATHNAME', 'purpose_key_eq'
LANGUAGE C STRICT IMMUTABLE PARALLEL SAFE LEAKPROOF;

CREATE FUNCTION consent.purpose_key_ne(consent.purpose_key, consent.purpose_key)
RETURNS boolean
AS 'MODULE_PATHNAME', 'purpose_key_ne'
LANGUAGE C STRICT IMMUTABLE PARALLEL SAFE LEAKPROOF;

CREATE FUNCTION consent.purpose_key_lt(consent.purpose_key, consent.purpose_key)
RETURNS boolean
AS 'MODULE_PATHNAME', 'purpose_key_lt'
LANGUAGE C STRICT IMMUTABLE PARALLEL SAFE LEAKPROOF;

CREATE FUNCTION consent.purpose_key_le(consent.purpose_key, consent.purpose_key)
RETURNS boolean
AS 'MODULE_PATHNAME', 'purpose_key_le'
LANGUAGE C STRICT IMMUTABLE PARALLEL SAFE LEAKPROOF;

CREATE FUNCTION consent.purpose_key_gt(consent.purpose_key, consent.purpose_key)
RETURNS boolean
AS 'MODULE_PATHNAME', 'purpose_key_gt'
LANGUAGE C STRICT IMMUTABLE PARALLEL SAFE LEAKPROOF;

CREATE FUNCTION consent.purpose_key_ge(consent.purpose_key, consent.purpose_key)
RETURNS boolean
AS 'MODULE_PATHNAME', 'purpose_key_ge'
LANGUAGE C STRICT IMMUTABLE PARALLEL SAFE LEAKPROOF;

CREATE FUNCTION consent.purpose_key_cmp(consent.purpose_key, consent.purpose_key)
RETURNS integer
AS 'MODULE_PATHNAME', 'purpose_key_cmp'
LANGUAGE C STRICT IMMUTABLE PARALLEL SAFE LEAKPROOF;

CREATE FUNCTION consent.purpose_key_hash(consent.purpose_key)
RETURNS integer
AS 'MODULE_PATHNAME', 'purpose_key_hash'
LANGUAGE C STRICT IMMUTABLE PARALLEL SAFE LEAKPROOF;

CREATE FUNCTION consent.purpose_key_hash_extended(consent.purpose_key, bigint)
RETURNS bigint
AS 'MODULE_PATHNAME', 'purpose_key_hash_extended'
LANGUAGE C STRICT IMMUTABLE PARALLEL SAFE LEAKPROOF;

COMMENT ON FUNCTION consent.purpose_key_eq(consent.purpose_key, consent.purpose_key) IS
'implementation of = for consent.purpose_key';
COMMENT ON FUNCTION consent.purpose_key_ne(consent.purpose_key, consent.purpose_key) IS
'implementation of <> for consent.purpose_key';
COMMENT ON FUNCTION consent.purpose_key_lt(consent.purpose_key, consent.purpose_key) IS
'implementation of < for consent.purpose_key';
COMMENT ON FUNCTION consent.purpose_key_le(consent.purpose_key, consent.purpose_key) IS
'implementation of <= for consent.purpose_key';
COMMENT ON FUNCTION consent.purpose_key_gt(consent.purpose_key, consent.purpose_key) IS
'implementation of > for consent.purpose_key';
COMMENT ON FUNCTION consent.purpose_key_ge(consent.purpose_key, consent.purpose_key) IS
'implementation of >= for consent.purpose_key';
COMMENT ON FUNCTION consent.purpose_key_cmp(consent.purpose_key, consent.purpose_key) IS
'btree comparison of purpose keys: -1, 0 or 1; a key sorts right before its descendants';
COMMENT ON FUNCTION consent.purpose_key_hash(consent.purpose_key) IS
'hash of a purpose key';
COMMENT ON FUNCTION consent.purpose_key_hash_extended(consent.purpose_key, bigint) IS
'64-bit seeded hash of a purpose key';

CREATE OPERATOR consent.= (
	LEFTARG = consent.purpose_key,
	RIGHTARG = consent.purpose_key,
	FUNCTION = consent.purpose_key_eq,
	COMMUTATOR = OPERATOR(consent.=),
	NEGATOR = OPERATOR(consent.<>),
	RESTRICT = eqsel,
	JOIN = eqjoinsel,
	HASHES,
	MERGES
);

CREATE OPERATOR consent.<> (
	LEFTARG = consent.purpose_key,
	RIGHTARG = consent.purpose_key,
	FUNCTION = consent.purpose_key_ne,
	COMMUTATOR = OPERATOR(consent.<>),
	NEGATOR = OPERATOR(consent.=),
	RESTRICT = neqsel,
	JOIN = neqjoinsel
);

CREATE OPERATOR consent.< (
	LEFTARG = consent.purpose_key,
	RIGHTARG = consent.purpose_key,
	FUNCTION = consent.purpose_key_lt,
	COMMUTATOR = OPERATOR(consent.>),
	NEGATOR = OPERATOR(consent.>=),
	RESTRICT = scalarltsel,
	JOIN = scalarltjoinsel
);

CREATE OPERATOR consent.<= (
	LEFTARG = consent.purpose_key,
	RIGHTARG = consent.purpose_key,
	FUNCTION = consent.purpose_key_le,
	COMMUTATOR = OPERATOR(consent.>=),
	NEGATOR = OPERATOR(consent.>),
	RESTRICT = scalarlesel,
	JOIN = scalarlejoinsel
);

CREATE OPERATOR consent.> (
	LEFTARG = consent.purpose_key,
	RIGHTARG = consent.purpose_key,
	FUNCTION = consent.purpose_key_gt,
	COMMUTATOR = OPERATOR(consent.<),
	NEGATOR = OPERATOR(consent.<=),
	RESTRICT = scalargtsel,
	JOIN = scalargtjoinsel
);

CREATE OPERATOR consent.>= (
	LEFTARG = consent.purpose_key,
	RIGHTARG = consent.purpose_key,
	FUNCTION = consent.purpose_key_ge,
	COMMUTATOR = OPERATOR(consent.<=),
	NEGATOR = OPERATOR(consent.<),
	RESTRICT = scalargesel,
	JOIN = scalargejoinsel
);

COMMENT ON OPERATOR consent.= (consent.purpose_key, consent.purpose_key) IS
'purpose keys are equal';
COMMENT ON OPERATOR consent.<> (consent.purpose_key, consent.purpose_key) IS
'purpose keys are not equal';
COMMENT ON OPERATOR consent.< (consent.purpose_key, consent.purpose_key) IS
'purpose key sorts before (a key sorts right before its descendants)';
COMMENT ON OPERATOR consent.<= (consent.purpose_key, consent.purpose_key) IS
'purpose key sorts before or is equal';
COMMENT ON OPERATOR consent.> (consent.purpose_key, consent.purpose_key) IS
'purpose key sorts after';
COMMENT ON OPERATOR consent.>= (consent.purpose_key, consent.purpose_key) IS
'purpose key sorts after or is equal';

-- Function 4 (btequalimage): equality is bytewise, so btree deduplication
-- may compare keys by their image.
CREATE OPERATOR CLASS consent.purpose_key_ops
DEFAULT FOR TYPE consent.purpose_key USING btree AS
	OPERATOR 1 consent.< ,
	OPERATOR 2 consent.<= ,
	OPERATOR 3 consent.= ,
	OPERATOR 4 consent.>= ,
	OPERATOR 5 consent.> ,
	FUNCTION 1 consent.purpose_key_cmp(consent.purpose_key, consent.purpose_key),
	FUNCTION 4 btequalimage(oid);

CREATE OPERATOR CLASS consent.purpose_key_ops
DEFAULT FOR TYPE consent.purpose_key USING hash AS
	OPERATOR 1 consent.= ,
	FUNCTION 1 consent.purpose_key_hash(consent.purpose_key),
	FUNCTION 2 consent.purpose_key_hash_extended(consent.purpose_key, bigint);

COMMENT ON OPERATOR FAMILY consent.purpose_key_ops USING btree IS
'btree operators of consent.purpose_key';
COMMENT ON OPERATOR CLASS consent.purpose_key_ops USING btree IS
'default btree operator class of consent.purpose_key: bytewise order, each key right before its descendants';
COMMENT ON OPERATOR FAMILY consent.purpose_key_ops USING hash IS
'hash operators of consent.purpose_key';
COMMENT ON OPERATOR CLASS consent.purpose_key_ops USING hash IS
'default hash operator class of consent.purpose_key';

-- The tree of purposes: a @> b when a is b or one of its ancestors.

CREATE FUNCTION consent.purpose_key_contains(consent.purpose_key, consent.purpose_key)
RETURNS boolean
AS 'MODULE_PATHNAME', 'purpose_key_contains'
LANGUAGE C STRICT IMMUTABLE PARALLEL SAFE LEAKPROOF;

CREATE FUNCTION consent.purpose_key_contained(consent.purpose_key, consent.purpose_key)
RETURNS boolean
AS 'MODULE_PATHNAME', 'purpose_key_contained'
LANGUAGE C STRICT IMMUTABLE PARALLEL SAFE LEAKPROOF;

COMMENT ON FUNCTION consent.purpose_key_contains(consent.purpose_key, consent.purpose_key) IS
'implementation of @> for consent.purpose_key: the first key is the second or one of its ancestors';
COMMENT ON FUNCTION consent.purpose_key_contained(consent.purpose_key, consent.purpose_key) IS
'implementation of <@ for consent.purpose_key: the first key is the second or one of its descendants';

CREATE OPERATOR consent.@> (
	LEFTARG = consent.purpose_key,
	RIGHTARG = consent.purpose_key,
	FUNCTION = consent.purpose_key_contains,
	COMMUTATOR = OPERATOR(consent.<@),
	RESTRICT = contsel,
	JOIN = contjoinsel
);

CREATE OPERATOR consent.<@ (
	LEFTARG = consent.purpose_key,
	RIGHTARG = consent.purpose_key,
	FUNCTION = consent.purpose_key_contained,
	COMMUTATOR = OPERATOR(consent.@>),
	RESTRICT = contsel,
	JOIN = contjoinsel
);

COMMENT ON OPERATOR consent.@> (consent.purpose_key, consent.purpose_key) IS
'is the same purpose as or an ancestor of';
COMMENT ON OPERATOR consent.<@ (consent.purpose_key, consent.purpose_key) IS
'is the same purpose as or a descendant of';

CREATE FUNCTION consent.parent(consent.purpose_key)
RETURNS consent.purpose_key
AS 'MODULE_PATHNAME', 'purpose_key_parent'
LANGUAGE C STRICT IMMUTABLE PARALLEL SAFE;

CREATE FUNCTION consent.depth(consent.purpose_key)
RETURNS integer
AS 'MODULE_PATHNAME', 'purpose_key_depth'
LANGUAGE C STRICT IMMUTABLE PARALLEL SAFE;

COMMENT ON FUNCTION consent.parent(consent.purpose_key) IS
'the purpose key without its last segment; NULL for a root key';
COMMENT ON FUNCTION consent.depth(consent.purpose_key) IS
'number of segments of a purpose key; 1 for a root key';

-- Casts.  From text through the type's input function, so every key is
-- validated; assignment only, so text never silently becomes a key in an
-- expression.  To text without a function: the representation is text's
-- (same length, alignment and by-reference passing), and a key's bytes are
-- ASCII, valid in every server encoding, with no NUL.  Assignment, not
-- implicit: with consent off the search_path, key = key must fail loudly
-- rather than fall back to text's operators and the text collation.
CREATE CAST (text AS consent.purpose_key)
	WITH INOUT
	AS ASSIGNMENT;

CREATE CAST (consent.purpose_key AS text)
	WITHOUT FUNCTION
	AS ASSIGNMENT;

COMMENT ON CAST (text AS consent.purpose_key) IS
'validating cast from text to purpose key; fails with SQLSTATE 22P02 on an invalid key';
COMMENT ON CAST (consent.purpose_key AS text) IS
'binary-coercible cast from purpose key to text';
