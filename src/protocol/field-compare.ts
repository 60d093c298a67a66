import type { FieldValue } from './field-table';

// RabbitMQ's names for field types, as they appear in its error texts.
const TYPE_NAMES: Record<FieldValue['type'], string> = {
  t: 'bool', b: 'byte', B: 'unsignedbyte', s: 'short', u: 'unsignedshort', I: 'signedint',
  i: 'unsignedint', l: 'long', L: 'long', f: 'float', d: 'double', D: 'decimal', S: 'longstr',
  x: 'binary', A: 'array', F: 'table', T: 'timestamp', V: 'void',
};

export function fieldTypeName(v: FieldValue): string {
  return TYPE_NAMES[v.type];
}

/** RabbitMQ's rabbit_misc:type_class: every integer width compares as one class, floats as another. */
function typeClass(t: FieldValue['type']): string {
  switch (t) {
    case 'b': case 'B': case 's': case 'u': case 'I': case 'i': case 'l': case 'L':
      return 'int';
    case 'f': case 'd':
      return 'float';
    default:
      return t;
  }
}

function scalar(v: FieldValue): unknown {
  switch (v.type) {
    case 'V':
      return null;
    case 'D':
      return `${v.scale}:${v.value}`;
    case 'S': case 'x':
      return v.value.toString('latin1');
    case 'l': case 'L': case 'T':
      return v.value;
    case 'A': case 'F':
      return JSON.stringify(v.value, (_k, x) => (typeof x === 'bigint' ? `${x}n` : x));
    default:
      return v.value;
  }
}

/** Equal in type class and value, as RabbitMQ compares binding and queue arguments. */
export function fieldsEqualByClass(a: FieldValue, b: FieldValue): boolean {
  if (typeClass(a.type) !== typeClass(b.type)) return false;
  const x = scalar(a);
  const y = scalar(b);
  if (typeof x === 'bigint' || typeof y === 'bigint') {
    return typeof x !== 'object' && typeof y !== 'object' && BigInt(x as number) === BigInt(y as number);
  }
  return x === y;
}

/** A value as RabbitMQ prints it inside error texts. */
export function fieldDisplay(v: FieldValue): string {
  switch (v.type) {
    case 'S': case 'x':
      return v.value.toString('utf8');
    case 'V':
      return 'undefined';
    case 'D':
      return `{decimal,${v.scale},${v.value}}`;
    case 'A': case 'F':
      return '[...]';
    default:
      return String(v.value);
  }
}

function numeric(v: FieldValue): number | undefined {
  switch (v.type) {
    case 'b': case 'B': case 's': case 'u': case 'I': case 'i': case 'f': case 'd':
      return v.value;
    case 'l': case 'L': case 'T':
      return Number(v.value);
    default:
      return undefined;
  }
}

/**
 * Header equality as RabbitMQ's headers exchange sees it: Erlang's == on the decoded values,
 * so numbers of any width (timestamps included) and floats compare by value, long strings
 * equal byte arrays with the same bytes, and arrays and tables compare exactly.
 */
export function headerValuesEqual(a: FieldValue, b: FieldValue): boolean {
  const x = numeric(a);
  if (x !== undefined) {
    const y = numeric(b);
    return y !== undefined && x === y;
  }
  if (a.type === 'S' || a.type === 'x') {
    return (b.type === 'S' || b.type === 'x') && a.value.equals(b.value);
  }
  if (a.type === 't') return b.type === 't' && a.value === b.value;
  if (a.type === 'V') return b.type === 'V';
  return fieldsEqualByClass(a, b) && a.type === b.type;
}
