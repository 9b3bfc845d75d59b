"""A small structural schema language for the fleet manifests, strict about
field names: an object accepts only the fields its schema lists, so a
misspelled or unknown field is an error. `Any` stands for a field the API
leaves open (x-kubernetes-preserve-unknown-fields) or that the manifests do
not use and this module does not describe further."""

import re


class Schema:
    def check(self, value, path):
        """A list of error strings; empty when `value` fits."""
        raise NotImplementedError


class Any(Schema):
    def check(self, value, path):
        return []


class Str(Schema):
    def __init__(self, pattern=None, min_len=None, max_len=None):
        self.pattern, self.min_len, self.max_len = pattern, min_len, max_len

    def check(self, value, path):
        if not isinstance(value, str):
            return ["%s: expected a string, got %r" % (path, value)]
        errors = []
        if self.pattern and not re.search(self.pattern, value):
            errors.append("%s: %r does not match %s" % (path, value, self.pattern))
        if self.min_len is not None and len(value) < self.min_len:
            errors.append("%s: shorter than %d" % (path, self.min_len))
        if self.max_len is not None and len(value) > self.max_len:
            errors.append("%s: longer than %d" % (path, self.max_len))
        return errors


class Int(Schema):
    def __init__(self, lo=-(2 ** 31), hi=2 ** 31 - 1):
        self.lo, self.hi = lo, hi

    def check(self, value, path):
        if isinstance(value, bool) or not isinstance(value, int):
            return ["%s: expected an integer, got %r" % (path, value)]
        if not self.lo <= value <= self.hi:
            return ["%s: %d outside [%d, %d]" % (path, value, self.lo, self.hi)]
        return []


class Bool(Schema):
    def check(self, value, path):
        return [] if isinstance(value, bool) else ["%s: expected a boolean, got %r" % (path, value)]


class Enum(Schema):
    def __init__(self, *values):
        self.values = values

    def check(self, value, path):
        return [] if value in self.values else [
            "%s: %r is not one of %s" % (path, value, ", ".join(map(str, self.values)))]


class Arr(Schema):
    def __init__(self, item, min_items=None, max_items=None):
        self.item, self.min_items, self.max_items = item, min_items, max_items

    def check(self, value, path):
        if not isinstance(value, list):
            return ["%s: expected a list, got %r" % (path, value)]
        errors = []
        if self.min_items is not None and len(value) < self.min_items:
            errors.append("%s: fewer than %d items" % (path, self.min_items))
        if self.max_items is not None and len(value) > self.max_items:
            errors.append("%s: more than %d items" % (path, self.max_items))
        for i, v in enumerate(value):
            errors += self.item.check(v, "%s[%d]" % (path, i))
        return errors


class MapOf(Schema):
    def __init__(self, value_schema):
        self.value_schema = value_schema

    def check(self, value, path):
        if not isinstance(value, dict):
            return ["%s: expected a map, got %r" % (path, value)]
        errors = []
        for k, v in value.items():
            errors += Str().check(k, "%s key" % path)
            errors += self.value_schema.check(v, "%s.%s" % (path, k))
        return errors


class Obj(Schema):
    """fields: {name: Schema}; required: names; rules: [(message, predicate)]
    for the API's cross-field validations (CEL)."""

    def __init__(self, fields, required=(), rules=()):
        self.fields, self.required, self.rules = fields, tuple(required), tuple(rules)

    def check(self, value, path):
        if not isinstance(value, dict):
            return ["%s: expected an object, got %r" % (path, value)]
        errors = []
        for name in value:
            if name not in self.fields:
                errors.append("%s: unknown field %r (known: %s)"
                              % (path, name, ", ".join(sorted(self.fields))))
        for name in self.required:
            if name not in value:
                errors.append("%s: missing required field %r" % (path, name))
        for name, v in value.items():
            if name in self.fields:
                errors += self.fields[name].check(v, "%s.%s" % (path, name))
        for message, predicate in self.rules:
            if not predicate(value):
                errors.append("%s: %s" % (path, message))
        return errors


def validate(schema, value, path="$"):
    return schema.check(value, path)
