#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define RING_MIN_CAPACITY 16

struct ring {
	unsigned char *data;
	size_t capacity;
	size_t head;
	size_t tail;
	size_t count;
};

static size_t next_power_of_two(size_t n)
{
	size_t p = RING_MIN_CAPACITY;

	while (p < n)
		p <<= 1;
	return p;
}

struct ring *ring_new(size_t capacity)
{
	struct ring *r = calloc(1, sizeof(*r));

	if (r == NULL)
		return NULL;
	r->capacity = next_power_of_two(capacity);
	r->data = malloc(r->capacity);
	if (r->data == NULL) {
		free(r);
		return NULL;
	}
	return r;
}

void ring_free(struct ring *r)
{
	if (r == NULL)
		return;
	free(r->data);
	free(r);
}

static int ring_grow(struct ring *r, size_t needed)
{
	size_t capacity = next_power_of_two(r->count + needed);
	unsigned char *data;
	size_t first;

	if (capacity <= r->capacity)
		return 0;
	data = malloc(capacity);
	if (data == NULL)
		return -ENOMEM;
	first = r->capacity - r->head;
	if (first > r->count)
		first = r->count;
	memcpy(data, r->data + r->head, first);
	memcpy(data + first, r->data, r->count - first);
	free(r->data);
	r->data = data;
	r->capacity = capacity;
	r->head = 0;
	r->tail = r->count;
	return 0;
}

int ring_write(struct ring *r, const void *buf, size_t len)
{
	const unsigned char *src = buf;
	size_t chunk;
	int err;

	if (r->capacity - r->count < len) {
		err = ring_grow(r, len);
		if (err < 0)
			return err;
	}
	while (len > 0) {
		chunk = r->capacity - r->tail;
		if (chunk > len)
			chunk = len;
		memcpy(r->data + r->tail, src, chunk);
		r->tail = (r->tail + chunk) & (r->capacity - 1);
		r->count += chunk;
		src += chunk;
		len -= chunk;
	}
	return 0;
}

size_t ring_read(struct ring *r, void *buf, size_t len)
{
	unsigned char *dst = buf;
	size_t total = 0;
	size_t chunk;

	if (len > r->count)
		len = r->count;
	while (len > 0) {
		chunk = r->capacity - r->head;
		if (chunk > len)
			chunk = len;
		memcpy(dst, r->data + r->head, chunk);
		r->head = (r->head + chunk) & (r->capacity - 1);
		r->count -= chunk;
		dst += chunk;
		len -= chunk;
		total += chunk;
	}
	return total;
}

int ring_peek_line(const struct ring *r, char *out, size_t size)
{
	size_t i;

	for (i = 0; i < r->count && i + 1 < size; i++) {
		char c = (char)r->data[(r->head + i) & (r->capacity - 1)];

		out[i] = c;
		if (c == '\n') {
			out[i + 1] = '\0';
			return (int)(i + 1);
		}
	}
	return 0;
}

static uint32_t checksum(const unsigned char *data, size_t len)
{
	uint32_t a = 1, b = 0;
	size_t i;

	for (i = 0; i < len; i++) {
		a = (a + data[i]) % 65521;
		b = (b + a) % 65521;
	}
	return (b << 16) | a;
}

static int copy_stream(FILE *in, FILE *out, struct ring *r)
{
	unsigned char buf[4096];
	size_t n;
	int err;

	while ((n = fread(buf, 1, sizeof(buf), in)) > 0) {
		err = ring_write(r, buf, n);
		if (err < 0) {
			fprintf(stderr, "ring_write: %s\n", strerror(-err));
			return err;
		}
		n = ring_read(r, buf, sizeof(buf));
		if (fwrite(buf, 1, n, out) != n)
			return -EIO;
	}
	return ferror(in) ? -EIO : 0;
}

int main(int argc, char **argv)
{
	struct ring *r;
	char line[256];
	int err;

	if (argc > 1 && strcmp(argv[1], "--help") == 0) {
		printf("usage: %s < input > output\n", argv[0]);
		return 0;
	}
	r = ring_new(1024);
	if (r == NULL) {
		fprintf(stderr, "out of memory\n");
		return 1;
	}
	err = copy_stream(stdin, stdout, r);
	if (ring_peek_line(r, line, sizeof(line)) > 0)
		fprintf(stderr, "left over: %s", line);
	fprintf(stderr, "checksum %08x\n", checksum(r->data, r->count));
	ring_free(r);
	return err < 0 ? 1 : 0;
}
