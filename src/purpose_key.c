/*-------------------------------------------------------------------------
 *
 * purpose_key.c
 *		The consent.purpose_key base type: dotted lowercase keys such as
 *		"marketing.email" that name a purpose and its place in the tree of
 *		purposes.
 *
 * A purpose key is 1 to PURPOSE_KEY_MAX_SEGMENTS segments separated by dots,
 * each segment matching [a-z][a-z0-9_]*, at most PURPOSE_KEY_MAX_BYTES bytes
 * in all.  purpose_key_validate() enforces that rule for every way a value
 * enters the server: text input, binary input and the cast from text.
 *
 * The representation is a varlena holding exactly the key's bytes, with no
 * terminating NUL: the same as text.  Other C code reads a key with
 * VARDATA_ANY() and VARSIZE_ANY_EXHDR() after PG_DETOAST_DATUM_PACKED(), and
 * the cast to text is binary-coercible.
 *
 * Ordering is plain bytewise (memcmp, then length).  Since '.' sorts below
 * every character a segment may hold ('.' < '0'-'9' < '_' < 'a'-'z'),
 * bytewise order equals segment-by-segment order, and a key sorts right
 * before its descendants: "a" < "a.b" < "a.b.c" < "a.c" < "a0" < "a_b" < "ab".
 * Equality is bytewise too, so hashing the bytes is consistent with it and
 * btree deduplication may compare images (btequalimage).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "common/hashfn.h"
#include "fmgr.h"
#include "libpq/pqformat.h"
#include "mb/pg_wchar.h"

#include "consent.h"

/*
 * Error messages quote the offending key; keys longer than this many bytes
 * are shown clipped, followed by "...".  It is generous enough to show whole
 * any key that is only somewhat over the limit.
 */
#define PURPOSE_KEY_SHOW_BYTES	(2 * PURPOSE_KEY_MAX_BYTES)

/* What is wrong with a key's character at a given position. */
typedef enum PurposeKeyFault
{
	PKF_LEADING_DOT,			/* ".a" */
	PKF_DOUBLE_DOT,				/* "a..b" */
	PKF_TRAILING_DOT,			/* "a." */
	PKF_SEGMENT_START,			/* "a.1b", "_a": digit or underscore first */
	PKF_UPPERCASE,				/* "Marketing" */
	PKF_OTHER					/* anything else: "a-b", "a b", "caf\xc3\xa9" */
} PurposeKeyFault;

static char *purpose_key_show(const char *str, int len);
static void purpose_key_show_char(unsigned char c, char *buf, size_t bufsize);
static void purpose_key_report(const char *str, int len, int pos,
							   PurposeKeyFault fault) pg_attribute_noreturn();
static inline bool purpose_key_contains_internal(const char *a, int alen,
												 const char *b, int blen);
static int	purpose_key_cmp_internal(struct varlena *a, struct varlena *b);
static inline bool purpose_key_eq_internal(struct varlena *a,
										   struct varlena *b);

/*
 * The key str[0 .. len-1], NUL-terminated and clipped for display.
 */
static char *
purpose_key_show(const char *str, int len)
{
	int			showlen;
	char	   *result;

	if (len <= PURPOSE_KEY_SHOW_BYTES)
		return pnstrdup(str, len);

	showlen = pg_mbcliplen(str, len, PURPOSE_KEY_SHOW_BYTES);
	result = palloc(showlen + 4);
	memcpy(result, str, showlen);
	strcpy(result + showlen, "...");
	return result;
}

/*
 * One byte of a key, printable: itself if it is printable ASCII, else \xNN.
 *
 * Every byte before the offending one is ASCII (anything else would have
 * been reported first), so the offending byte starts a character and its
 * byte position is also its character position.  A non-ASCII character is
 * shown by its first byte, which reads the same in every server encoding.
 */
static void
purpose_key_show_char(unsigned char c, char *buf, size_t bufsize)
{
	if (c >= 0x20 && c < 0x7f)
		snprintf(buf, bufsize, "%c", c);
	else
		snprintf(buf, bufsize, "\\x%02x", c);
}

/*
 * Report the fault found at 0-based byte position pos of a key.
 */
static void
purpose_key_report(const char *str, int len, int pos, PurposeKeyFault fault)
{
	char		cbuf[8];
	char	   *shown = purpose_key_show(str, len);

	purpose_key_show_char((unsigned char) str[pos], cbuf, sizeof(cbuf));

#define PURPOSE_KEY_BAD_CHAR(detail) \
	ereport(ERROR, \
			(errcode(ERRCODE_INVALID_TEXT_REPRESENTATION), \
			 errmsg("invalid character \"%s\" at position %d in purpose key \"%s\"", \
					cbuf, pos + 1, shown), \
			 errdetail(detail), \
			 errhint("Purpose keys are 1 to %d dot-separated segments of [a-z][a-z0-9_]*, at most %d bytes.", \
					 PURPOSE_KEY_MAX_SEGMENTS, PURPOSE_KEY_MAX_BYTES)))

	switch (fault)
	{
		case PKF_LEADING_DOT:
			PURPOSE_KEY_BAD_CHAR("A purpose key must not start with a dot.");
			break;
		case PKF_DOUBLE_DOT:
			PURPOSE_KEY_BAD_CHAR("A purpose key must not contain an empty segment (two dots in a row).");
			break;
		case PKF_TRAILING_DOT:
			PURPOSE_KEY_BAD_CHAR("A purpose key must not end with a dot.");
			break;
		case PKF_SEGMENT_START:
			PURPOSE_KEY_BAD_CHAR("Each segment must start with a lowercase letter.");
			break;
		case PKF_UPPERCASE:
			PURPOSE_KEY_BAD_CHAR("Uppercase letters are not allowed; purpose keys are lowercase.");
			break;
		case PKF_OTHER:
			PURPOSE_KEY_BAD_CHAR("Only lowercase letters, digits, underscores and dots are allowed.");
			break;
	}

#undef PURPOSE_KEY_BAD_CHAR

	pg_unreachable();
}

/*
 * purpose_key_validate
 *		Raise an error unless str[0 .. len-1] is a valid purpose key.
 *
 * str need not be NUL-terminated.  Characters are checked left to right and
 * the first bad one is reported with its 1-based position; only a key made
 * of allowed characters is then checked against the segment and byte limits.
 */
void
purpose_key_validate(const char *str, int len)
{
	bool		segment_start = true;
	int			nsegments = 1;
	int			i;

	if (len <= 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_TEXT_REPRESENTATION),
				 errmsg("invalid purpose key \"\""),
				 errdetail("A purpose key must not be empty."),
				 errhint("Purpose keys are 1 to %d dot-separated segments of [a-z][a-z0-9_]*, at most %d bytes.",
						 PURPOSE_KEY_MAX_SEGMENTS, PURPOSE_KEY_MAX_BYTES)));

	for (i = 0; i < len; i++)
	{
		unsigned char c = (unsigned char) str[i];

		if (c == '.')
		{
			if (i == 0)
				purpose_key_report(str, len, i, PKF_LEADING_DOT);
			if (segment_start)
				purpose_key_report(str, len, i, PKF_DOUBLE_DOT);
			if (i == len - 1)
				purpose_key_report(str, len, i, PKF_TRAILING_DOT);
			nsegments++;
			segment_start = true;
			continue;
		}

		if ((c >= '0' && c <= '9') || c == '_')
		{
			if (segment_start)
				purpose_key_report(str, len, i, PKF_SEGMENT_START);
		}
		else if (c >= 'A' && c <= 'Z')
			purpose_key_report(str, len, i, PKF_UPPERCASE);
		else if (c < 'a' || c > 'z')
			purpose_key_report(str, len, i, PKF_OTHER);

		segment_start = false;
	}

	if (nsegments > PURPOSE_KEY_MAX_SEGMENTS)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_TEXT_REPRESENTATION),
				 errmsg("too many segments in purpose key \"%s\"",
						purpose_key_show(str, len)),
				 errdetail("The key has %d segments; at most %d are allowed.",
						   nsegments, PURPOSE_KEY_MAX_SEGMENTS),
				 errhint("Purpose keys are 1 to %d dot-separated segments of [a-z][a-z0-9_]*, at most %d bytes.",
						 PURPOSE_KEY_MAX_SEGMENTS, PURPOSE_KEY_MAX_BYTES)));

	if (len > PURPOSE_KEY_MAX_BYTES)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_TEXT_REPRESENTATION),
				 errmsg("purpose key \"%s\" is too long",
						purpose_key_show(str, len)),
				 errdetail("The key is %d bytes long; at most %d bytes are allowed.",
						   len, PURPOSE_KEY_MAX_BYTES),
				 errhint("Purpose keys are 1 to %d dot-separated segments of [a-z][a-z0-9_]*, at most %d bytes.",
						 PURPOSE_KEY_MAX_SEGMENTS, PURPOSE_KEY_MAX_BYTES)));
}

/*
 * A new purpose key datum holding str[0 .. len-1], already validated.
 */
static struct varlena *
purpose_key_make(const char *str, int len)
{
	struct varlena *result = (struct varlena *) palloc(VARHDRSZ + len);

	SET_VARSIZE(result, VARHDRSZ + len);
	memcpy(VARDATA(result), str, len);
	return result;
}

/* Arguments may arrive short-headered, compressed or out of line. */
#define PG_GETARG_PURPOSE_KEY_PP(n)	PG_DETOAST_DATUM_PACKED(PG_GETARG_DATUM(n))

/*
 * I/O
 */

PG_FUNCTION_INFO_V1(purpose_key_in);
Datum
purpose_key_in(PG_FUNCTION_ARGS)
{
	char	   *str = PG_GETARG_CSTRING(0);
	int			len = strlen(str);

	purpose_key_validate(str, len);
	PG_RETURN_POINTER(purpose_key_make(str, len));
}

PG_FUNCTION_INFO_V1(purpose_key_out);
Datum
purpose_key_out(PG_FUNCTION_ARGS)
{
	struct varlena *key = PG_GETARG_PURPOSE_KEY_PP(0);

	PG_RETURN_CSTRING(pnstrdup(VARDATA_ANY(key), VARSIZE_ANY_EXHDR(key)));
}

/*
 * Binary input: the key's bytes, in the client encoding, as for text.
 * Validated exactly like text input.
 */
PG_FUNCTION_INFO_V1(purpose_key_recv);
Datum
purpose_key_recv(PG_FUNCTION_ARGS)
{
	StringInfo	buf = (StringInfo) PG_GETARG_POINTER(0);
	char	   *str;
	int			nbytes;

	str = pq_getmsgtext(buf, buf->len - buf->cursor, &nbytes);
	purpose_key_validate(str, nbytes);
	PG_RETURN_POINTER(purpose_key_make(str, nbytes));
}

PG_FUNCTION_INFO_V1(purpose_key_send);
Datum
purpose_key_send(PG_FUNCTION_ARGS)
{
	struct varlena *key = PG_GETARG_PURPOSE_KEY_PP(0);
	StringInfoData buf;

	pq_begintypsend(&buf);
	pq_sendtext(&buf, VARDATA_ANY(key), VARSIZE_ANY_EXHDR(key));
	PG_RETURN_BYTEA_P(pq_endtypsend(&buf));
}

/*
 * Comparison: bytewise, then shorter first (see the file header for why
 * that is also the tree order).
 */

static int
purpose_key_cmp_internal(struct varlena *a, struct varlena *b)
{
	int			alen = VARSIZE_ANY_EXHDR(a);
	int			blen = VARSIZE_ANY_EXHDR(b);
	int			cmp;

	cmp = memcmp(VARDATA_ANY(a), VARDATA_ANY(b), Min(alen, blen));
	if (cmp != 0)
		return cmp;
	return (alen > blen) - (alen < blen);
}

/* Equality needs no ordering: unequal lengths settle it without memcmp. */
static inline bool
purpose_key_eq_internal(struct varlena *a, struct varlena *b)
{
	int			alen = VARSIZE_ANY_EXHDR(a);
	int			blen = VARSIZE_ANY_EXHDR(b);

	return alen == blen && memcmp(VARDATA_ANY(a), VARDATA_ANY(b), alen) == 0;
}

PG_FUNCTION_INFO_V1(purpose_key_cmp);
Datum
purpose_key_cmp(PG_FUNCTION_ARGS)
{
	struct varlena *a = PG_GETARG_PURPOSE_KEY_PP(0);
	struct varlena *b = PG_GETARG_PURPOSE_KEY_PP(1);
	int			cmp = purpose_key_cmp_internal(a, b);

	PG_FREE_IF_COPY(a, 0);
	PG_FREE_IF_COPY(b, 1);
	PG_RETURN_INT32(cmp < 0 ? -1 : (cmp > 0 ? 1 : 0));
}

PG_FUNCTION_INFO_V1(purpose_key_eq);
Datum
purpose_key_eq(PG_FUNCTION_ARGS)
{
	struct varlena *a = PG_GETARG_PURPOSE_KEY_PP(0);
	struct varlena *b = PG_GETARG_PURPOSE_KEY_PP(1);
	bool		result = purpose_key_eq_internal(a, b);

	PG_FREE_IF_COPY(a, 0);
	PG_FREE_IF_COPY(b, 1);
	PG_RETURN_BOOL(result);
}

PG_FUNCTION_INFO_V1(purpose_key_ne);
Datum
purpose_key_ne(PG_FUNCTION_ARGS)
{
	struct varlena *a = PG_GETARG_PURPOSE_KEY_PP(0);
	struct varlena *b = PG_GETARG_PURPOSE_KEY_PP(1);
	bool		result = !purpose_key_eq_internal(a, b);

	PG_FREE_IF_COPY(a, 0);
	PG_FREE_IF_COPY(b, 1);
	PG_RETURN_BOOL(result);
}

#define PURPOSE_KEY_CMP_FUNC(name, op) \
PG_FUNCTION_INFO_V1(name); \
Datum \
name(PG_FUNCTION_ARGS) \
{ \
	struct varlena *a = PG_GETARG_PURPOSE_KEY_PP(0); \
	struct varlena *b = PG_GETARG_PURPOSE_KEY_PP(1); \
	bool		result = purpose_key_cmp_internal(a, b) op 0; \
\
	PG_FREE_IF_COPY(a, 0); \
	PG_FREE_IF_COPY(b, 1); \
	PG_RETURN_BOOL(result); \
}

PURPOSE_KEY_CMP_FUNC(purpose_key_lt, <)
PURPOSE_KEY_CMP_FUNC(purpose_key_le, <=)
PURPOSE_KEY_CMP_FUNC(purpose_key_gt, >)
PURPOSE_KEY_CMP_FUNC(purpose_key_ge, >=)

/*
 * Hashing: the key's bytes, consistent with bytewise equality.
 */

PG_FUNCTION_INFO_V1(purpose_key_hash);
Datum
purpose_key_hash(PG_FUNCTION_ARGS)
{
	struct varlena *key = PG_GETARG_PURPOSE_KEY_PP(0);
	Datum		result;

	result = hash_any((unsigned char *) VARDATA_ANY(key),
					  VARSIZE_ANY_EXHDR(key));

	PG_FREE_IF_COPY(key, 0);
	return result;
}

PG_FUNCTION_INFO_V1(purpose_key_hash_extended);
Datum
purpose_key_hash_extended(PG_FUNCTION_ARGS)
{
	struct varlena *key = PG_GETARG_PURPOSE_KEY_PP(0);
	uint64		seed = PG_GETARG_INT64(1);
	Datum		result;

	result = hash_any_extended((unsigned char *) VARDATA_ANY(key),
							   VARSIZE_ANY_EXHDR(key), seed);

	PG_FREE_IF_COPY(key, 0);
	return result;
}

/*
 * The tree: a @> b when a is b or an ancestor of b, that is when b equals a
 * or begins with a followed by a dot.
 */

static inline bool
purpose_key_contains_internal(const char *a, int alen,
							  const char *b, int blen)
{
	if (alen > blen)
		return false;
	if (alen < blen && b[alen] != '.')
		return false;
	return memcmp(a, b, alen) == 0;
}

PG_FUNCTION_INFO_V1(purpose_key_contains);
Datum
purpose_key_contains(PG_FUNCTION_ARGS)
{
	struct varlena *a = PG_GETARG_PURPOSE_KEY_PP(0);
	struct varlena *b = PG_GETARG_PURPOSE_KEY_PP(1);
	bool		result;

	result = purpose_key_contains_internal(VARDATA_ANY(a), VARSIZE_ANY_EXHDR(a),
										   VARDATA_ANY(b), VARSIZE_ANY_EXHDR(b));

	PG_FREE_IF_COPY(a, 0);
	PG_FREE_IF_COPY(b, 1);
	PG_RETURN_BOOL(result);
}

PG_FUNCTION_INFO_V1(purpose_key_contained);
Datum
purpose_key_contained(PG_FUNCTION_ARGS)
{
	struct varlena *a = PG_GETARG_PURPOSE_KEY_PP(0);
	struct varlena *b = PG_GETARG_PURPOSE_KEY_PP(1);
	bool		result;

	result = purpose_key_contains_internal(VARDATA_ANY(b), VARSIZE_ANY_EXHDR(b),
										   VARDATA_ANY(a), VARSIZE_ANY_EXHDR(a));

	PG_FREE_IF_COPY(a, 0);
	PG_FREE_IF_COPY(b, 1);
	PG_RETURN_BOOL(result);
}

/*
 * parent(key): the key without its last segment, or NULL for a root key.
 */
PG_FUNCTION_INFO_V1(purpose_key_parent);
Datum
purpose_key_parent(PG_FUNCTION_ARGS)
{
	struct varlena *key = PG_GETARG_PURPOSE_KEY_PP(0);
	const char *str = VARDATA_ANY(key);
	int			len = VARSIZE_ANY_EXHDR(key);

	while (len > 0 && str[len - 1] != '.')
		len--;
	if (len == 0)
		PG_RETURN_NULL();

	/* drop the dot; what remains is a valid key by construction */
	PG_RETURN_POINTER(purpose_key_make(str, len - 1));
}

/*
 * depth(key): the number of segments, 1 for a root key.
 */
PG_FUNCTION_INFO_V1(purpose_key_depth);
Datum
purpose_key_depth(PG_FUNCTION_ARGS)
{
	struct varlena *key = PG_GETARG_PURPOSE_KEY_PP(0);
	const char *str = VARDATA_ANY(key);
	int			len = VARSIZE_ANY_EXHDR(key);
	int32		depth = 1;
	int			i;

	for (i = 0; i < len; i++)
		if (str[i] == '.')
			depth++;

	PG_FREE_IF_COPY(key, 0);
	PG_RETURN_INT32(depth);
}
