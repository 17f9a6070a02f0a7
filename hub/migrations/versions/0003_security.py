"""security: API clients, client-assertion replay guard, audit trail (AuditEvent per interaction)

Revision ID: 0003_security
Revises: 0002_search_indexes
Create Date: 2026-11-25 12:05:13.891647
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0003_security'
down_revision = '0002_search_indexes'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('hub_audit_event',
    sa.Column('audit_pk', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('event_id', sa.String(length=64), nullable=False),
    sa.Column('recorded', sa.BigInteger(), nullable=False),
    sa.Column('client_id', sa.String(length=64), nullable=False),
    sa.Column('action', sa.String(length=1), nullable=False),
    sa.Column('subtype', sa.String(length=32), nullable=False),
    sa.Column('outcome', sa.String(length=2), nullable=False),
    sa.Column('resource_type', sa.String(length=64), nullable=False),
    sa.Column('entity', sa.String(length=200), nullable=False),
    sa.Column('source_ip', sa.String(length=64), nullable=False),
    sa.Column('content', sa.Text(), nullable=False),
    sa.PrimaryKeyConstraint('audit_pk', name=op.f('pk_hub_audit_event')),
    sa.UniqueConstraint('event_id', name=op.f('uq_hub_audit_event_event_id'))
    )
    with op.batch_alter_table('hub_audit_event', schema=None) as batch_op:
        batch_op.create_index('ix_hub_audit_event_client', ['client_id', 'recorded'], unique=False)
        batch_op.create_index('ix_hub_audit_event_entity', ['entity', 'recorded'], unique=False)
        batch_op.create_index('ix_hub_audit_event_recorded', ['recorded'], unique=False)

    op.create_table('hub_client',
    sa.Column('client_id', sa.String(length=64), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('role', sa.String(length=32), nullable=False),
    sa.Column('scopes', sa.Text(), nullable=False),
    sa.Column('institutions', sa.Text(), nullable=False),
    sa.Column('consortia', sa.Text(), nullable=False),
    sa.Column('secret_hash', sa.Text(), nullable=True),
    sa.Column('jwks', sa.Text(), nullable=True),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.Column('created', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('client_id', name=op.f('pk_hub_client'))
    )
    op.create_table('hub_client_assertion',
    sa.Column('client_id', sa.String(length=64), nullable=False),
    sa.Column('jti', sa.String(length=255), nullable=False),
    sa.Column('expires', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('client_id', 'jti', name=op.f('pk_hub_client_assertion'))
    )
    with op.batch_alter_table('hub_client_assertion', schema=None) as batch_op:
        batch_op.create_index('ix_hub_client_assertion_expires', ['expires'], unique=False)

    op.create_table('hub_audit_patient',
    sa.Column('event_id', sa.String(length=64), nullable=False),
    sa.Column('patient_id', sa.String(length=64), nullable=False),
    sa.ForeignKeyConstraint(['event_id'], ['hub_audit_event.event_id'], name=op.f('fk_hub_audit_patient_event_id_hub_audit_event'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('event_id', 'patient_id', name=op.f('pk_hub_audit_patient'))
    )
    with op.batch_alter_table('hub_audit_patient', schema=None) as batch_op:
        batch_op.create_index('ix_hub_audit_patient_patient', ['patient_id', 'event_id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('hub_audit_patient', schema=None) as batch_op:
        batch_op.drop_index('ix_hub_audit_patient_patient')

    op.drop_table('hub_audit_patient')
    with op.batch_alter_table('hub_client_assertion', schema=None) as batch_op:
        batch_op.drop_index('ix_hub_client_assertion_expires')

    op.drop_table('hub_client_assertion')
    op.drop_table('hub_client')
    with op.batch_alter_table('hub_audit_event', schema=None) as batch_op:
        batch_op.drop_index('ix_hub_audit_event_recorded')
        batch_op.drop_index('ix_hub_audit_event_entity')
        batch_op.drop_index('ix_hub_audit_event_client')

    op.drop_table('hub_audit_event')
